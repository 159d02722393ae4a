//! Text splitters: recursive on separators with overlap, and Markdown-aware.

use serde::{Deserialize, Serialize};

/// A piece of a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The text.
    pub text: String,
    /// For Markdown: the headings above it, outermost first (`"Setup > Linux"`); empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub section: String,
}

/// Turns a text into chunks; what [`Ingestor::ingest_text`](crate::rag::Ingestor::ingest_text) takes.
pub trait Splitter: kai_core::MaybeSend + kai_core::MaybeSync {
    /// The chunks of `text`, in order.
    fn split(&self, text: &str) -> Vec<Chunk>;
}

impl Splitter for RecursiveSplitter {
    fn split(&self, text: &str) -> Vec<Chunk> {
        RecursiveSplitter::split(self, text)
    }
}

impl Splitter for MarkdownSplitter {
    fn split(&self, text: &str) -> Vec<Chunk> {
        MarkdownSplitter::split(self, text)
    }
}

/// Splits text on the coarsest separator that keeps pieces within `chunk_size` characters, merging
/// neighbouring pieces up to that size and repeating up to `overlap` characters of one chunk at the
/// start of the next.
///
/// ```
/// use kai_memory::rag::RecursiveSplitter;
///
/// let splitter = RecursiveSplitter::new(40, 10);
/// let chunks = splitter.split("First paragraph here.\n\nSecond paragraph, a little longer than that.");
/// assert!(chunks.iter().all(|c| c.text.chars().count() <= 40));
/// assert_eq!(chunks[0].text, "First paragraph here.");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecursiveSplitter {
    chunk_size: usize,
    overlap: usize,
    separators: Vec<String>,
}

impl RecursiveSplitter {
    /// Chunks of at most `chunk_size` characters with up to `overlap` characters repeated; separators
    /// paragraph, line, sentence, word, then character.
    pub fn new(chunk_size: usize, overlap: usize) -> Self {
        let chunk_size = chunk_size.max(1);
        Self {
            chunk_size,
            overlap: overlap.min(chunk_size / 2),
            separators: ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " "]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// Uses these separators, coarsest first (characters are always the last resort).
    pub fn with_separators(mut self, separators: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.separators = separators
            .into_iter()
            .map(Into::into)
            .filter(|s: &String| !s.is_empty())
            .collect();
        self
    }

    /// Splits `text` into chunks, trimmed of surrounding whitespace; empty chunks are dropped.
    pub fn split(&self, text: &str) -> Vec<Chunk> {
        let mut pieces = Vec::new();
        self.pieces(text, 0, &mut pieces);
        self.merge(pieces)
            .into_iter()
            .map(|text| Chunk {
                text,
                section: String::new(),
            })
            .collect()
    }

    /// Cuts `text` into pieces no longer than `chunk_size`, each keeping its trailing separator.
    fn pieces(&self, text: &str, level: usize, out: &mut Vec<String>) {
        if text.chars().count() <= self.chunk_size {
            out.push(text.to_owned());
            return;
        }
        let Some(separator) = self.separators[level.min(self.separators.len())..]
            .iter()
            .position(|s| text.contains(s.as_str()))
            .map(|i| i + level)
        else {
            // No separator left: cut by characters.
            let chars: Vec<char> = text.chars().collect();
            out.extend(chars.chunks(self.chunk_size).map(|c| c.iter().collect::<String>()));
            return;
        };
        let sep = &self.separators[separator];
        let mut rest = text;
        while let Some(at) = rest.find(sep.as_str()) {
            let (piece, tail) = rest.split_at(at + sep.len());
            self.pieces(piece, separator + 1, out);
            rest = tail;
        }
        if !rest.is_empty() {
            self.pieces(rest, separator + 1, out);
        }
    }

    fn merge(&self, pieces: Vec<String>) -> Vec<String> {
        let mut chunks = Vec::new();
        let mut current: Vec<String> = Vec::new();
        let mut length = 0;
        for piece in pieces {
            let size = piece.chars().count();
            if length + size > self.chunk_size && !current.is_empty() {
                push_trimmed(&mut chunks, &current.concat());
                // Keep the tail of the chunk, whole pieces only, as the overlap.
                while length > self.overlap || (length + size > self.chunk_size && !current.is_empty()) {
                    let first = current.remove(0);
                    length -= first.chars().count();
                }
            }
            length += size;
            current.push(piece);
        }
        if !current.is_empty() {
            push_trimmed(&mut chunks, &current.concat());
        }
        chunks
    }
}

/// Adds `text`, trimmed, unless nothing is left of it. A chunk equal to the one before is kept: the
/// text repeats itself there.
fn push_trimmed(chunks: &mut Vec<String>, text: &str) {
    let trimmed = text.trim();
    if !trimmed.is_empty() {
        chunks.push(trimmed.to_owned());
    }
}

/// Splits Markdown at its headings first, recording the heading path of each chunk, and keeps fenced
/// code blocks whole unless one alone is larger than a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkdownSplitter {
    inner: RecursiveSplitter,
}

impl MarkdownSplitter {
    /// Chunks of at most `chunk_size` characters with up to `overlap` repeated.
    pub fn new(chunk_size: usize, overlap: usize) -> Self {
        Self {
            inner: RecursiveSplitter::new(chunk_size, overlap).with_separators(["\n```\n", "\n\n", "\n", ". ", " "]),
        }
    }

    /// Splits `markdown` into chunks carrying their section path.
    pub fn split(&self, markdown: &str) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        let mut headings: Vec<(usize, String)> = Vec::new();
        let mut body = String::new();
        let mut in_fence = false;
        let flush = |body: &mut String, headings: &[(usize, String)], chunks: &mut Vec<Chunk>| {
            let section = headings.iter().map(|(_, h)| h.as_str()).collect::<Vec<_>>().join(" > ");
            for chunk in self.inner.split(body) {
                chunks.push(Chunk {
                    text: chunk.text,
                    section: section.clone(),
                });
            }
            body.clear();
        };
        for line in markdown.split_inclusive('\n') {
            let trimmed = line.trim_start();
            if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
                in_fence = !in_fence;
            }
            let level = trimmed.chars().take_while(|&c| c == '#').count();
            let is_heading = !in_fence && (1..=6).contains(&level) && trimmed[level..].starts_with(' ');
            if is_heading {
                flush(&mut body, &headings, &mut chunks);
                let title = trimmed[level..].trim().to_owned();
                headings.retain(|(l, _)| *l < level);
                headings.push((level, title));
            } else {
                body.push_str(line);
            }
        }
        flush(&mut body, &headings, &mut chunks);
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_the_size_and_keep_all_words() {
        let text = "Alpha beta gamma. Delta epsilon zeta eta. Theta iota kappa lambda mu.\n\nNu xi omicron pi rho sigma tau upsilon phi chi psi omega.";
        let splitter = RecursiveSplitter::new(30, 0);
        let chunks = splitter.split(text);
        assert!(chunks.iter().all(|c| c.text.chars().count() <= 30), "{chunks:?}");
        let rejoined: Vec<&str> = chunks.iter().flat_map(|c| c.text.split_whitespace()).collect();
        let original: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(rejoined, original, "no overlap: every word exactly once, in order");
    }

    /// A paragraph that repeats the one before (a refrain, a repeated warning) is text of its own, not a
    /// duplicate to drop.
    #[test]
    fn a_chunk_equal_to_the_one_before_is_kept() {
        let text = "Mind the step.\n\nMind the step.\n\nDoor on left.";
        let chunks: Vec<String> = RecursiveSplitter::new(16, 0)
            .split(text)
            .into_iter()
            .map(|chunk| chunk.text)
            .collect();
        assert_eq!(chunks, ["Mind the step.", "Mind the step.", "Door on left."]);
    }

    #[test]
    fn overlap_repeats_the_end_of_the_previous_chunk() {
        let text = (0..40).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        let chunks = RecursiveSplitter::new(30, 10).split(&text);
        assert!(chunks.len() > 3);
        for pair in chunks.windows(2) {
            let last_word = pair[0].text.split_whitespace().last().unwrap();
            assert!(pair[1].text.contains(last_word), "{pair:?}");
        }
    }

    #[test]
    fn long_words_and_multibyte_text_are_cut_safely() {
        let text = "ééééééééééééééééééééééééé ünïcødé 日本語のテキストをここに書きます";
        let chunks = RecursiveSplitter::new(7, 2).split(text);
        assert!(chunks.iter().all(|c| c.text.chars().count() <= 7));
        assert!(RecursiveSplitter::new(10, 3).split("").is_empty());
    }

    #[test]
    fn markdown_sections_and_code_fences() {
        let markdown = "# Guide\nIntro text.\n## Install\nRun this:\n```\n# not a heading\ncargo build\n```\n## Use\nCall it.\n# Other\nMore.";
        let chunks = MarkdownSplitter::new(200, 0).split(markdown);
        let sections: Vec<&str> = chunks.iter().map(|c| c.section.as_str()).collect();
        assert_eq!(sections, ["Guide", "Guide > Install", "Guide > Use", "Other"]);
        assert!(chunks[1].text.contains("# not a heading\ncargo build"));
    }
}
