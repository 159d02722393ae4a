//! Paths the model gives, checked before anything is touched: relative, no `..`, no NUL, bounded.

use crate::error::{Error, PathRefusal, Result};

/// The longest path accepted, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH: usize = 4096;

/// A path inside the workspace, as its normal components (`.` and empty components dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelativePath {
    components: Vec<String>,
}

impl RelativePath {
    /// Checks `path`. `"."` or `""` is the workspace itself: no components.
    pub(crate) fn parse(path: &str) -> Result<Self> {
        let refuse = |reason| Error::refused(path, reason);
        if path.len() > MAX_PATH {
            return Err(refuse(PathRefusal::TooLong));
        }
        if path.contains('\0') {
            return Err(refuse(PathRefusal::Nul));
        }
        if path.starts_with('/') {
            return Err(refuse(PathRefusal::Absolute));
        }
        let mut components = Vec::new();
        for component in path.split('/') {
            match component {
                "" | "." => {}
                ".." => return Err(refuse(PathRefusal::ParentComponent)),
                name => components.push(name.to_owned()),
            }
        }
        Ok(RelativePath { components })
    }

    /// The components.
    pub(crate) fn components(&self) -> &[String] {
        &self.components
    }

    /// The parent's components and the last name, for a path that names something in the workspace.
    pub(crate) fn split_last(&self, original: &str) -> Result<(&[String], &str)> {
        match self.components.split_last() {
            Some((name, parent)) => Ok((parent, name)),
            None => Err(Error::refused(original, PathRefusal::Empty)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(path: &str) -> Option<PathRefusal> {
        match RelativePath::parse(path) {
            Err(Error::PathRefused { reason, .. }) => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn paths_are_relative_without_parent_components() {
        assert_eq!(refusal("/etc/passwd"), Some(PathRefusal::Absolute));
        assert_eq!(refusal("../x"), Some(PathRefusal::ParentComponent));
        assert_eq!(refusal("a/../../x"), Some(PathRefusal::ParentComponent));
        assert_eq!(refusal("a\0b"), Some(PathRefusal::Nul));
        assert_eq!(refusal(&"a/".repeat(3000)), Some(PathRefusal::TooLong));
        let parsed = RelativePath::parse("./notes//a.txt/.").unwrap();
        assert_eq!(parsed.components(), ["notes", "a.txt"]);
        assert!(RelativePath::parse(".").unwrap().components().is_empty());
        assert!(RelativePath::parse("...").is_ok(), "`...` is a name, not a parent");
    }
}
