//! Listing: directory entries, entries with sizes, the recursive tree, and file metadata.

use std::time::SystemTime;

use cap_std::fs::{Dir, FileType, Metadata};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    error::FsError,
    limits::Limits,
    ops::walk::ExcludeSet,
    sandbox::{Sandbox, non_empty},
};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    File,
    Directory,
    Symlink,
    Other,
}

impl EntryType {
    pub fn of(file_type: FileType) -> EntryType {
        if file_type.is_dir() {
            EntryType::Directory
        } else if file_type.is_file() {
            EntryType::File
        } else if file_type.is_symlink() {
            EntryType::Symlink
        } else {
            EntryType::Other
        }
    }

    fn tag(self) -> &'static str {
        match self {
            EntryType::Directory => "[DIR]",
            EntryType::File => "[FILE]",
            EntryType::Symlink => "[LINK]",
            EntryType::Other => "[OTHER]",
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DirEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub entry_type: EntryType,
    /// Size in bytes (files only; `list_directory_with_sizes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// A directory's entries grouped by type, each group sorted by name. Grouped arrays of names
/// rather than an object per entry keep large listings small for clients to parse.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct Listing {
    pub path: String,
    pub directories: Vec<String>,
    pub files: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symlinks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<String>,
}

impl Listing {
    /// One `[DIR] name` / `[FILE] name` line per entry, all sorted by name, as the official
    /// server prints them.
    pub fn render(&self) -> String {
        let mut lines: Vec<(&str, EntryType)> = Vec::with_capacity(
            self.directories.len() + self.files.len() + self.symlinks.len() + self.other.len(),
        );
        for (names, entry_type) in [
            (&self.directories, EntryType::Directory),
            (&self.files, EntryType::File),
            (&self.symlinks, EntryType::Symlink),
            (&self.other, EntryType::Other),
        ] {
            lines.extend(names.iter().map(|n| (n.as_str(), entry_type)));
        }
        lines.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut out = String::with_capacity(lines.iter().map(|l| l.0.len() + 8).sum());
        for (name, entry_type) in lines {
            out.push_str(entry_type.tag());
            out.push(' ');
            out.push_str(name);
            out.push('\n');
        }
        if out.is_empty() {
            out.push_str("(empty directory)\n");
        }
        out
    }
}

/// Opens a directory inside the sandbox for listing.
fn open_dir(sandbox: &Sandbox, path: &str) -> Result<(Dir, String), FsError> {
    let resolved = sandbox.resolve(path)?;
    let target = sandbox.target(&resolved);
    let display = sandbox.display_path(&resolved);
    let dir = target
        .root
        .dir
        .open_dir(non_empty(target.rel))
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::NOTDIR.raw_os_error() => FsError::WrongKind {
                path: display.display().to_string(),
                message: "is not a directory",
            },
            _ => FsError::io(&display, e),
        })?;
    Ok((dir, display.display().to_string()))
}

/// The entries of one directory, sorted by name, with file sizes when asked.
fn read_entries(
    sandbox: &Sandbox,
    limits: &Limits,
    path: &str,
    with_sizes: bool,
) -> Result<(String, Vec<DirEntry>), FsError> {
    let (dir, display) = open_dir(sandbox, path)?;
    let mut entries = Vec::new();
    for item in dir.entries().map_err(|e| FsError::io(&display, e))? {
        let item = item.map_err(|e| FsError::io(&display, e))?;
        if entries.len() >= limits.max_entries {
            return Err(FsError::LimitExceeded {
                path: display,
                message: format!(
                    "the directory has more than {} entries (the listing limit); use search_files to narrow it",
                    limits.max_entries
                ),
            });
        }
        let file_type = item.file_type().map_err(|e| FsError::io(&display, e))?;
        let entry_type = EntryType::of(file_type);
        let size = if with_sizes && entry_type == EntryType::File {
            Some(item.metadata().map(|m| m.len()).unwrap_or(0))
        } else {
            None
        };
        entries.push(DirEntry {
            name: item.file_name().to_string_lossy().into_owned(),
            entry_type,
            size,
        });
    }
    entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok((display, entries))
}

/// The entries of one directory, grouped by type.
pub fn list_directory(sandbox: &Sandbox, limits: &Limits, path: &str) -> Result<Listing, FsError> {
    let (path, entries) = read_entries(sandbox, limits, path, false)?;
    let mut listing = Listing {
        path,
        ..Listing::default()
    };
    for entry in entries {
        match entry.entry_type {
            EntryType::Directory => listing.directories.push(entry.name),
            EntryType::File => listing.files.push(entry.name),
            EntryType::Symlink => listing.symlinks.push(entry.name),
            EntryType::Other => listing.other.push(entry.name),
        }
    }
    Ok(listing)
}

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortBy {
    #[default]
    Name,
    Size,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SizedListing {
    pub path: String,
    pub entries: Vec<DirEntry>,
    pub total_files: usize,
    pub total_directories: usize,
    pub combined_size: u64,
}

impl SizedListing {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for entry in &self.entries {
            let size = match entry.size {
                Some(size) => format!("{:>10}", format_size(size)),
                None => String::new(),
            };
            out.push_str(&format!(
                "{} {:<30} {size}\n",
                entry.entry_type.tag(),
                entry.name
            ));
        }
        out.push_str(&format!(
            "\nTotal: {} files, {} directories\nCombined size: {}\n",
            self.total_files,
            self.total_directories,
            format_size(self.combined_size)
        ));
        out
    }
}

pub fn list_with_sizes(
    sandbox: &Sandbox,
    limits: &Limits,
    path: &str,
    sort_by: SortBy,
) -> Result<SizedListing, FsError> {
    let (path, mut entries) = read_entries(sandbox, limits, path, true)?;
    if let SortBy::Size = sort_by {
        entries.sort_by_key(|e| std::cmp::Reverse(e.size.unwrap_or(0)));
    }
    let total_files = entries
        .iter()
        .filter(|e| e.entry_type == EntryType::File)
        .count();
    let total_directories = entries
        .iter()
        .filter(|e| e.entry_type == EntryType::Directory)
        .count();
    let combined_size = entries.iter().filter_map(|e| e.size).sum();
    Ok(SizedListing {
        path,
        entries,
        total_files,
        total_directories,
        combined_size,
    })
}

/// Sizes as people read them: B, KB, MB, GB, TB with two decimals.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TreeNode {
    pub name: String,
    #[serde(rename = "type")]
    pub entry_type: EntryType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub children: Option<Vec<TreeNode>>,
    /// Set on a directory whose children were not expanded because of the depth limit.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub truncated: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Tree {
    pub path: String,
    pub tree: Vec<TreeNode>,
}

/// The recursive tree under `path`; symlinked directories are shown, never descended.
pub fn directory_tree(
    sandbox: &Sandbox,
    limits: &Limits,
    path: &str,
    exclude: &[String],
) -> Result<Tree, FsError> {
    let (dir, display) = open_dir(sandbox, path)?;
    let exclude = ExcludeSet::new(exclude)?;
    let mut count = 0usize;
    let tree = tree_level(&dir, "", 1, limits, &exclude, &mut count, &display)?;
    Ok(Tree {
        path: display,
        tree,
    })
}

fn tree_level(
    dir: &Dir,
    rel: &str,
    depth: usize,
    limits: &Limits,
    exclude: &ExcludeSet,
    count: &mut usize,
    display: &str,
) -> Result<Vec<TreeNode>, FsError> {
    let mut items = Vec::new();
    for item in dir.entries().map_err(|e| FsError::io(display, e))? {
        let item = item.map_err(|e| FsError::io(display, e))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let file_type = item.file_type().map_err(|e| FsError::io(display, e))?;
        items.push((name, EntryType::of(file_type)));
    }
    items.sort();
    let mut nodes = Vec::new();
    for (name, entry_type) in items {
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if exclude.is_excluded(&child_rel) {
            continue;
        }
        *count += 1;
        if *count > limits.max_entries {
            return Err(FsError::LimitExceeded {
                path: display.to_string(),
                message: format!(
                    "the tree has more than {} entries (the listing limit); list a subdirectory or add excludePatterns",
                    limits.max_entries
                ),
            });
        }
        let (children, truncated) = if entry_type == EntryType::Directory {
            if depth >= limits.max_tree_depth {
                (None, true)
            } else {
                use cap_fs_ext::DirExt;
                let sub = dir
                    .open_dir_nofollow(&name)
                    .map_err(|e| FsError::io(format!("{display}/{child_rel}"), e))?;
                (
                    Some(tree_level(
                        &sub,
                        &child_rel,
                        depth + 1,
                        limits,
                        exclude,
                        count,
                        display,
                    )?),
                    false,
                )
            }
        } else {
            (None, false)
        };
        nodes.push(TreeNode {
            name,
            entry_type,
            children,
            truncated,
        });
    }
    Ok(nodes)
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    pub path: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accessed: Option<String>,
    pub is_directory: bool,
    pub is_file: bool,
    pub is_symlink: bool,
    /// The permission bits, in octal (e.g. `644`).
    pub permissions: String,
}

impl FileInfo {
    pub fn render(&self) -> String {
        let mut out = format!("path: {}\nsize: {}\n", self.path, self.size);
        for (key, value) in [
            ("created", &self.created),
            ("modified", &self.modified),
            ("accessed", &self.accessed),
        ] {
            if let Some(value) = value {
                out.push_str(&format!("{key}: {value}\n"));
            }
        }
        out.push_str(&format!(
            "isDirectory: {}\nisFile: {}\nisSymlink: {}\npermissions: {}\n",
            self.is_directory, self.is_file, self.is_symlink, self.permissions
        ));
        out
    }
}

/// Metadata of a path. A symlink is described as itself (`isSymlink`), with its target's
/// kind when the target is inside the sandbox.
pub fn file_info(sandbox: &Sandbox, path: &str) -> Result<FileInfo, FsError> {
    let resolved = sandbox.resolve(path)?;
    let target = sandbox.target(&resolved);
    let display = sandbox.display_path(&resolved);
    let rel = non_empty(target.rel);
    let link_meta = target
        .root
        .dir
        .symlink_metadata(rel)
        .map_err(|e| FsError::io(&display, e))?;
    let is_symlink = link_meta.is_symlink();
    let meta = if is_symlink {
        target
            .root
            .dir
            .metadata(rel)
            .map_err(|e| FsError::io(&display, e))?
    } else {
        link_meta
    };
    Ok(FileInfo {
        path: display.display().to_string(),
        size: meta.len(),
        created: iso(meta.created().ok()),
        modified: iso(meta.modified().ok()),
        accessed: iso(meta.accessed().ok()),
        is_directory: meta.is_dir(),
        is_file: meta.is_file(),
        is_symlink,
        permissions: permissions(&meta),
    })
}

fn iso(time: Option<cap_std::time::SystemTime>) -> Option<String> {
    let time: SystemTime = time?.into_std();
    Some(chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339())
}

fn permissions(meta: &Metadata) -> String {
    use cap_std::fs::PermissionsExt;
    format!("{:o}", meta.permissions().mode() & 0o777)
}
