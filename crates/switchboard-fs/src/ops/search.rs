//! Searching: file names by glob, and file contents by regex (ripgrep's engine).

use std::time::Instant;

use grep_regex::RegexMatcherBuilder;
use grep_searcher::{BinaryDetection, Searcher, SearcherBuilder, Sink, SinkContext, SinkMatch};
use schemars::JsonSchema;
use serde::Serialize;

use crate::{
    error::FsError,
    limits::Limits,
    ops::{
        list::EntryType,
        walk::{ExcludeSet, Flow, WalkOptions, glob, include_set, walk},
    },
    sandbox::{Sandbox, non_empty},
};

#[derive(Debug, Serialize, JsonSchema)]
pub struct FileMatches {
    /// Absolute paths of the matching entries, in walk order.
    pub matches: Vec<String>,
    /// True when the search stopped early; `reason` says why.
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl FileMatches {
    pub fn render(&self) -> String {
        let mut out = if self.matches.is_empty() {
            "No matches found\n".to_string()
        } else {
            self.matches.join("\n") + "\n"
        };
        if let Some(reason) = self.reason {
            out.push_str(&format!("(truncated: {reason})\n"));
        }
        out
    }
}

fn open_start(sandbox: &Sandbox, path: &str) -> Result<(cap_std::fs::Dir, String), FsError> {
    let resolved = sandbox.resolve(path)?;
    let target = sandbox.target(&resolved);
    let display = sandbox.display_path(&resolved).display().to_string();
    let dir = target
        .root
        .dir
        .open_dir(non_empty(target.rel))
        .map_err(|e| FsError::io(&display, e))?;
    Ok((dir, display))
}

/// Entries under `path` whose path relative to `path` matches the glob `pattern`.
pub fn search_files(
    sandbox: &Sandbox,
    limits: &Limits,
    path: &str,
    pattern: &str,
    exclude: &[String],
) -> Result<FileMatches, FsError> {
    let (dir, display) = open_start(sandbox, path)?;
    let matcher = glob(pattern)?.compile_matcher();
    let exclude = ExcludeSet::new(exclude)?;
    let options = WalkOptions {
        exclude: &exclude,
        respect_gitignore: false,
        deadline: Some(Instant::now() + limits.search_time_budget),
    };
    let mut matches = Vec::new();
    let end = walk(dir, &options, |visit| {
        if matcher.is_match(visit.rel) {
            matches.push(format!("{display}/{}", visit.rel));
            if matches.len() >= limits.max_search_results {
                return Flow::Stop;
            }
        }
        Flow::Continue
    })
    .map_err(|e| FsError::io(&display, e))?;
    let reason = if end.timed_out {
        Some("search time budget spent")
    } else if end.stopped {
        Some("result limit reached")
    } else {
        None
    };
    Ok(FileMatches {
        matches,
        truncated: reason.is_some(),
        reason,
    })
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContentMatches {
    pub files: Vec<FileHits>,
    /// Number of matching lines returned.
    pub match_count: usize,
    pub files_searched: usize,
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FileHits {
    pub path: String,
    pub lines: Vec<Line>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub line_number: u64,
    pub text: String,
    /// False for a context line around a match.
    pub is_match: bool,
}

impl ContentMatches {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for file in &self.files {
            for line in &file.lines {
                let sep = if line.is_match { ':' } else { '-' };
                out.push_str(&format!(
                    "{}{sep}{}{sep}{}\n",
                    file.path, line.line_number, line.text
                ));
            }
        }
        if out.is_empty() {
            out.push_str("No matches found\n");
        }
        out.push_str(&format!(
            "({} matching lines in {} files searched",
            self.match_count, self.files_searched
        ));
        if let Some(reason) = self.reason {
            out.push_str(&format!("; truncated: {reason}"));
        }
        out.push_str(")\n");
        out
    }
}

/// What `search_file_contents` was asked.
pub struct ContentQuery<'a> {
    pub path: &'a str,
    pub pattern: &'a str,
    pub include: &'a [String],
    pub exclude: &'a [String],
    pub case_insensitive: bool,
    pub context_lines: usize,
    pub respect_gitignore: bool,
    pub max_results: Option<usize>,
}

/// Longest line text returned; longer lines are cut (minified files would flood the result).
const MAX_LINE_CHARS: usize = 500;

/// Regex search over file contents with line numbers and context. Binary files are skipped.
pub fn search_contents(
    sandbox: &Sandbox,
    limits: &Limits,
    query: &ContentQuery<'_>,
) -> Result<ContentMatches, FsError> {
    let (dir, display) = open_start(sandbox, query.path)?;
    let matcher = RegexMatcherBuilder::new()
        .case_insensitive(query.case_insensitive)
        .line_terminator(Some(b'\n'))
        .build(query.pattern)
        .map_err(|e| FsError::BadRequest {
            message: format!("bad regex {:?}: {e}", query.pattern),
        })?;
    let include = include_set(query.include)?;
    let exclude = ExcludeSet::new(query.exclude)?;
    let max_results = query
        .max_results
        .unwrap_or(limits.max_search_results)
        .min(limits.max_search_results);
    let mut searcher = SearcherBuilder::new()
        .line_number(true)
        .before_context(query.context_lines)
        .after_context(query.context_lines)
        .binary_detection(BinaryDetection::quit(b'\x00'))
        .build();
    let options = WalkOptions {
        exclude: &exclude,
        respect_gitignore: query.respect_gitignore,
        deadline: Some(Instant::now() + limits.search_time_budget),
    };
    let mut files = Vec::new();
    let mut match_count = 0usize;
    let mut files_searched = 0usize;
    let mut full = false;
    let end = walk(dir, &options, |visit| {
        if visit.entry_type != EntryType::File {
            return Flow::Continue;
        }
        if let Some(include) = &include
            && !include.is_match(visit.rel)
        {
            return Flow::Continue;
        }
        // The parent handle confines the open; a file swapped for a symlink cannot escape it.
        let Ok(file) = visit.parent.open(visit.name) else {
            return Flow::Continue;
        };
        files_searched += 1;
        let mut sink = Collect {
            lines: Vec::new(),
            matches: 0,
            budget: max_results - match_count,
        };
        if searcher
            .search_file(&matcher, &file.into_std(), &mut sink)
            .is_err()
        {
            return Flow::Continue;
        }
        if !sink.lines.is_empty() {
            match_count += sink.matches;
            files.push(FileHits {
                path: format!("{display}/{}", visit.rel),
                lines: sink.lines,
            });
        }
        if match_count >= max_results {
            full = true;
            return Flow::Stop;
        }
        Flow::Continue
    })
    .map_err(|e| FsError::io(&display, e))?;
    let reason = if end.timed_out {
        Some("search time budget spent")
    } else if full {
        Some("result limit reached")
    } else {
        None
    };
    Ok(ContentMatches {
        files,
        match_count,
        files_searched,
        truncated: reason.is_some(),
        reason,
    })
}

struct Collect {
    lines: Vec<Line>,
    matches: usize,
    budget: usize,
}

fn line_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end_matches(['\n', '\r']);
    if text.chars().count() > MAX_LINE_CHARS {
        let cut: String = text.chars().take(MAX_LINE_CHARS).collect();
        format!("{cut}…")
    } else {
        text.to_string()
    }
}

impl Sink for Collect {
    type Error = std::io::Error;

    fn matched(&mut self, _: &Searcher, mat: &SinkMatch<'_>) -> Result<bool, Self::Error> {
        if self.matches >= self.budget {
            return Ok(false);
        }
        self.matches += 1;
        self.lines.push(Line {
            line_number: mat.line_number().unwrap_or(0),
            text: line_text(mat.bytes()),
            is_match: true,
        });
        Ok(self.matches < self.budget)
    }

    fn context(&mut self, _: &Searcher, ctx: &SinkContext<'_>) -> Result<bool, Self::Error> {
        self.lines.push(Line {
            line_number: ctx.line_number().unwrap_or(0),
            text: line_text(ctx.bytes()),
            is_match: false,
        });
        Ok(true)
    }
}
