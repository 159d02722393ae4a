//! Which programs a command may run, and with which arguments.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The longest command line accepted, in bytes over all arguments.
pub const MAX_COMMAND_LINE: usize = 128 << 10;

/// The allow-list of programs. A command is an argument vector, never a shell string: its first
/// element must be a program named here, and no shell ever parses the rest.
///
/// Allowing an interpreter (`sh`, `python3`) or a program that runs others (`find -exec`, `env`,
/// `xargs`) allows whatever it runs; deny such arguments with [`CommandPolicy::allow_with`], or rely on
/// the sandbox alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandPolicy {
    programs: BTreeMap<String, Vec<String>>,
}

impl CommandPolicy {
    /// An empty policy: no program may run.
    pub fn new() -> Self {
        CommandPolicy::default()
    }

    /// Allows `program` (a name looked up under `/usr`) with any arguments.
    pub fn allow(self, program: impl Into<String>) -> Self {
        self.allow_with(program, std::iter::empty::<String>())
    }

    /// Allows `program`, refusing each argument equal to one of `denied` or starting with it and `=`
    /// (`"-exec"` refuses `-exec`; `"--output"` refuses `--output` and `--output=x`).
    pub fn allow_with(
        mut self,
        program: impl Into<String>,
        denied: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.programs
            .insert(program.into(), denied.into_iter().map(Into::into).collect());
        self
    }

    /// The allowed programs, by name.
    pub fn programs(&self) -> impl Iterator<Item = &str> {
        self.programs.keys().map(String::as_str)
    }

    /// The allowed programs, comma-separated, for messages.
    pub(crate) fn allowed_list(&self) -> String {
        self.programs().collect::<Vec<_>>().join(", ")
    }

    /// Checks a command line against the policy; gives its program and arguments.
    pub(crate) fn check<'a>(&self, argv: &'a [String]) -> Result<(&'a String, &'a [String])> {
        let invalid = |reason: &str| Error::InvalidCommand { reason: reason.into() };
        let Some((program, arguments)) = argv.split_first() else {
            return Err(invalid("it is empty"));
        };
        if argv.iter().any(|argument| argument.contains('\0')) {
            return Err(invalid("an argument holds a NUL byte"));
        }
        if argv.iter().map(String::len).sum::<usize>() > MAX_COMMAND_LINE {
            return Err(invalid(&format!("it is longer than {} KiB", MAX_COMMAND_LINE >> 10)));
        }
        let Some(denied) = self.programs.get(program) else {
            return Err(Error::CommandNotAllowed {
                program: program.clone(),
                allowed: self.allowed_list(),
            });
        };
        for argument in arguments {
            let refused = denied.iter().any(|denied| {
                argument == denied
                    || argument
                        .strip_prefix(denied.as_str())
                        .is_some_and(|rest| rest.starts_with('='))
            });
            if refused {
                return Err(Error::ArgumentRefused {
                    program: program.clone(),
                    argument: argument.clone(),
                });
            }
        }
        Ok((program, arguments))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| word.to_string()).collect()
    }

    #[test]
    fn only_allowed_programs_with_allowed_arguments_pass() {
        let policy = CommandPolicy::new()
            .allow("ls")
            .allow_with("find", ["-exec", "-delete"]);
        assert!(policy.check(&argv(&["ls", "-la"])).is_ok());
        assert!(policy.check(&argv(&["find", ".", "-name", "*.rs"])).is_ok());
        assert!(matches!(
            policy.check(&argv(&["find", ".", "-exec", "sh", ";"])),
            Err(Error::ArgumentRefused { argument, .. }) if argument == "-exec"
        ));
        assert!(policy.check(&argv(&["find", ".", "-delete=x"])).is_err());
        assert!(policy.check(&argv(&["find", ".", "-deletex"])).is_ok());
        for refused in [&["sh", "-c", "ls"][..], &["/usr/bin/ls"], &["ls; rm -rf /"], &["ls\0"]] {
            assert!(policy.check(&argv(refused)).is_err(), "{refused:?}");
        }
        assert!(matches!(policy.check(&[]), Err(Error::InvalidCommand { .. })));
        assert!(policy.check(&argv(&["ls", &"a".repeat(MAX_COMMAND_LINE)])).is_err());
    }
}
