//! The MCP face of the filesystem server: tool definitions, roots, and result rendering.

use std::{path::PathBuf, sync::Arc};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{
        CallToolResult, ContentBlock, Implementation, ResourceContents, ServerCapabilities,
        ServerConfig,
    },
    service::NotificationContext,
    tool, tool_handler, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use switchboard_core::{ToolOutput, failure, output_schema, success};
use tokio::sync::RwLock;

use crate::{
    error::FsError,
    limits::Limits,
    ops::{list, read, search, write},
    sandbox::{Root, Sandbox},
};

/// The tools that change the filesystem; `--read-only` removes them from `tools/list`.
pub const WRITE_TOOLS: &[&str] = &[
    "write_file",
    "edit_file",
    "create_directory",
    "move_file",
    "delete_file",
    "delete_directory",
];

/// Configuration of a filesystem server.
#[derive(Debug, Clone)]
pub struct FsConfig {
    /// The allowed directories. Each must exist.
    pub roots: Vec<PathBuf>,
    /// Serve only the reading tools.
    pub read_only: bool,
    pub limits: Limits,
}

struct Shared {
    cli_sandbox: Sandbox,
    limits: Limits,
    router: ToolRouter<FsServer>,
}

/// The filesystem MCP server.
///
/// Cloning makes a handle for a new session: it shares the configuration, and starts with
/// the command-line roots until that session's client offers its own (MCP roots).
pub struct FsServer {
    shared: Arc<Shared>,
    client_roots: Arc<RwLock<Option<Sandbox>>>,
}

impl Clone for FsServer {
    fn clone(&self) -> Self {
        FsServer {
            shared: self.shared.clone(),
            client_roots: Arc::new(RwLock::new(None)),
        }
    }
}

impl FsServer {
    /// Opens the roots and builds the tool set. Fails if a root cannot be opened.
    pub fn new(config: FsConfig) -> Result<FsServer, FsError> {
        let roots = config
            .roots
            .iter()
            .map(|path| Root::open(path))
            .collect::<Result<Vec<_>, _>>()?;
        let mut router = Self::tool_router();
        if config.read_only {
            for name in WRITE_TOOLS {
                router.remove_route(name);
            }
        }
        Ok(FsServer {
            shared: Arc::new(Shared {
                cli_sandbox: Sandbox::new(roots)?,
                limits: config.limits,
                router,
            }),
            client_roots: Arc::new(RwLock::new(None)),
        })
    }

    /// The sandbox in force for this session: the client's roots if it offered any.
    async fn sandbox(&self) -> Sandbox {
        match &*self.client_roots.read().await {
            Some(sandbox) => sandbox.clone(),
            None => self.shared.cli_sandbox.clone(),
        }
    }

    /// Runs a blocking filesystem operation on tokio's blocking pool.
    async fn run<T, F>(&self, op: F) -> Result<T, FsError>
    where
        T: Send + 'static,
        F: FnOnce(&Sandbox, &Limits) -> Result<T, FsError> + Send + 'static,
    {
        let sandbox = self.sandbox().await;
        let shared = self.shared.clone();
        match tokio::task::spawn_blocking(move || op(&sandbox, &shared.limits)).await {
            Ok(result) => result,
            Err(join) => Err(FsError::Io {
                path: String::new(),
                source: std::io::Error::other(join),
            }),
        }
    }

    async fn answer<T, F>(&self, op: F) -> Result<CallToolResult, ErrorData>
    where
        T: ToolOutput + Send + 'static,
        F: FnOnce(&Sandbox, &Limits) -> Result<T, FsError> + Send + 'static,
    {
        Ok(match self.run(op).await {
            Ok(output) => success(&output),
            Err(err) => failure(err.kind(), err.to_string()),
        })
    }

    /// Replaces this session's roots with the client's (`roots/list`). Only existing
    /// directories are kept; if none is usable, the command-line roots stay in force.
    // Roots are deprecated by 2026-07-28 (SEP-2577) but are how session-era clients scope a
    // filesystem server, so they are honoured until the spec removes them.
    #[allow(deprecated)]
    async fn refresh_client_roots(&self, context: &NotificationContext<RoleServer>) {
        let offers_roots = context
            .peer
            .peer_info()
            .is_some_and(|info| info.capabilities.roots.is_some());
        if !offers_roots {
            return;
        }
        let listed = match context.peer.list_roots().await {
            Ok(listed) => listed,
            Err(err) => {
                tracing::warn!(%err, "the client offers roots but roots/list failed");
                return;
            }
        };
        let roots: Vec<Root> = listed
            .roots
            .iter()
            .filter_map(|root| {
                let path = root.uri.strip_prefix("file://")?;
                let path = percent_decode(path)?;
                match Root::open(std::path::Path::new(&path)) {
                    Ok(root) => Some(root),
                    Err(err) => {
                        tracing::warn!(uri = %root.uri, %err, "skipping a client root");
                        None
                    }
                }
            })
            .collect();
        match Sandbox::new(roots) {
            Ok(sandbox) => {
                tracing::info!(
                    roots = ?sandbox.roots().iter().map(|r| r.path.display().to_string()).collect::<Vec<_>>(),
                    "using the client's roots"
                );
                *self.client_roots.write().await = Some(sandbox);
            }
            Err(_) => tracing::warn!("the client offered no usable roots; keeping --root"),
        }
    }
}

/// Decodes `%XX` escapes of a `file://` URI path.
fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// ---- Tool parameters. Names match @modelcontextprotocol/server-filesystem. ----

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadTextFileParams {
    /// Path of the file, absolute or relative to the first allowed directory.
    pub path: String,
    /// Return only the first N lines.
    pub head: Option<u64>,
    /// Return only the last N lines.
    pub tail: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct PathParams {
    /// Path, absolute or relative to the first allowed directory.
    pub path: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadMultipleParams {
    /// Paths of the files to read.
    pub paths: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WriteFileParams {
    pub path: String,
    /// The complete new content of the file.
    pub content: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EditFileParams {
    pub path: String,
    /// Edits applied in order.
    pub edits: Vec<write::Edit>,
    /// Return the diff without writing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListWithSizesParams {
    pub path: String,
    /// `name` (default) or `size` (largest first).
    #[serde(default)]
    pub sort_by: list::SortBy,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryTreeParams {
    pub path: String,
    /// Glob patterns to leave out; a pattern without `*` matches that name at any depth.
    #[serde(default)]
    pub exclude_patterns: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct MoveFileParams {
    pub source: String,
    /// Must not exist yet: an existing destination is never overwritten.
    pub destination: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchFilesParams {
    /// Directory to search under.
    pub path: String,
    /// Glob matched against paths relative to `path`: `*.rs` is the top level only,
    /// `**/*.rs` every level.
    pub pattern: String,
    #[serde(default)]
    pub exclude_patterns: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchContentsParams {
    /// Directory to search under.
    pub path: String,
    /// Regular expression (Rust `regex` syntax) matched against each line.
    pub pattern: String,
    /// Only search files whose relative path matches one of these globs.
    #[serde(default)]
    pub include_patterns: Vec<String>,
    #[serde(default)]
    pub exclude_patterns: Vec<String>,
    #[serde(default)]
    pub case_insensitive: bool,
    /// Lines of context before and after each match (at most 10).
    #[serde(default)]
    pub context_lines: usize,
    /// Skip files ignored by `.gitignore` files (and `.git`).
    #[serde(default)]
    pub respect_gitignore: bool,
    /// Stop after this many matching lines (capped by the server's limit).
    pub max_results: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeleteDirectoryParams {
    pub path: String,
    /// Delete the contents too. Without it, only an empty directory is deleted.
    #[serde(default)]
    pub recursive: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AllowedDirectories {
    pub directories: Vec<String>,
}

// ---- Text renderings. ----

impl ToolOutput for read::TextFile {
    fn render_text(&self) -> String {
        self.content.clone()
    }
}
impl ToolOutput for read::MultipleFiles {
    fn render_text(&self) -> String {
        self.files
            .iter()
            .map(|f| match (&f.content, &f.error) {
                (Some(content), _) => format!("{}:\n{content}\n", f.path),
                (None, Some(error)) => format!("{}: Error - {error}", f.path),
                (None, None) => f.path.clone(),
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}
impl ToolOutput for write::WriteOutcome {
    fn render_text(&self) -> String {
        format!(
            "Successfully wrote {} bytes to {}{}",
            self.bytes_written,
            self.path,
            if self.created { " (new file)" } else { "" }
        )
    }
}
impl ToolOutput for write::EditOutcome {
    fn render_text(&self) -> String {
        // Lengthen the fence if the diff itself contains backticks, as the official server does.
        let mut fence = String::from("```");
        while self.diff.contains(&fence) {
            fence.push('`');
        }
        let note = if self.applied {
            ""
        } else {
            "(dry run, nothing written)\n"
        };
        format!("{note}{fence}diff\n{}{fence}\n", self.diff)
    }
}
impl ToolOutput for write::PathOutcome {
    fn render_text(&self) -> String {
        match self.outcome {
            "created" => format!("Successfully created directory {}", self.path),
            "existed" => format!("Directory {} already exists", self.path),
            other => format!("Successfully {other} {}", self.path),
        }
    }
}
impl ToolOutput for write::MoveOutcome {
    fn render_text(&self) -> String {
        format!("Successfully moved {} to {}", self.source, self.destination)
    }
}
impl ToolOutput for list::Listing {
    fn render_text(&self) -> String {
        self.render()
    }
}
impl ToolOutput for list::SizedListing {
    fn render_text(&self) -> String {
        self.render()
    }
}
impl ToolOutput for list::Tree {
    fn render_text(&self) -> String {
        serde_json::to_string_pretty(&self.tree).unwrap_or_default()
    }
}
impl ToolOutput for list::FileInfo {
    fn render_text(&self) -> String {
        self.render()
    }
}
impl ToolOutput for search::FileMatches {
    fn render_text(&self) -> String {
        self.render()
    }
}
impl ToolOutput for search::ContentMatches {
    fn render_text(&self) -> String {
        self.render()
    }
}
impl ToolOutput for AllowedDirectories {
    fn render_text(&self) -> String {
        format!("Allowed directories:\n{}", self.directories.join("\n"))
    }
}

/// Most context lines `search_file_contents` returns around a match.
const MAX_CONTEXT_LINES: usize = 10;

#[tool_router]
impl FsServer {
    #[tool(
        description = "Read a UTF-8 text file. Use head or tail to read only the first or last N lines. Binary files are refused (use read_media_file). Only works within allowed directories.",
        annotations(title = "Read text file", read_only_hint = true, open_world_hint = false),
        output_schema = output_schema::<read::TextFile>()
    )]
    async fn read_text_file(
        &self,
        Parameters(p): Parameters<ReadTextFileParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.answer(move |sb, limits| read::read_text(sb, limits, &p.path, p.head, p.tail))
            .await
    }

    #[tool(
        description = "Deprecated alias of read_text_file, kept for older prompts.",
        annotations(title = "Read file (deprecated)", read_only_hint = true, open_world_hint = false),
        output_schema = output_schema::<read::TextFile>()
    )]
    async fn read_file(
        &self,
        Parameters(p): Parameters<ReadTextFileParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.read_text_file(Parameters(p)).await
    }

    #[tool(
        description = "Read an image, audio or other binary file and return it base64-encoded with its MIME type.",
        annotations(title = "Read media file", read_only_hint = true, open_world_hint = false),
        output_schema = output_schema::<read::MediaFile>()
    )]
    async fn read_media_file(
        &self,
        Parameters(p): Parameters<PathParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let media = match self
            .run(move |sb, limits| read::read_media(sb, limits, &p.path))
            .await
        {
            Ok(media) => media,
            Err(err) => return Ok(failure(err.kind(), err.to_string())),
        };
        let block = match media.kind {
            "image" => ContentBlock::image(media.base64.clone(), media.mime_type.clone()),
            "audio" => ContentBlock::audio(media.base64.clone(), media.mime_type.clone()),
            _ => ContentBlock::resource(
                ResourceContents::blob(media.base64.clone(), format!("file://{}", media.path))
                    .with_mime_type(media.mime_type.clone()),
            ),
        };
        let mut result = CallToolResult::success(vec![block]);
        result.structured_content = serde_json::to_value(&media).ok();
        Ok(result)
    }

    #[tool(
        description = "Read several text files at once. A file that fails is reported inline and does not fail the call.",
        annotations(title = "Read multiple files", read_only_hint = true, open_world_hint = false),
        output_schema = output_schema::<read::MultipleFiles>()
    )]
    async fn read_multiple_files(
        &self,
        Parameters(p): Parameters<ReadMultipleParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.answer(move |sb, limits| read::read_multiple(sb, limits, &p.paths))
            .await
    }

    #[tool(
        description = "Create a file or replace its whole content. The write is atomic (temporary file, then rename).",
        annotations(title = "Write file", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false),
        output_schema = output_schema::<write::WriteOutcome>()
    )]
    async fn write_file(
        &self,
        Parameters(p): Parameters<WriteFileParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.answer(move |sb, limits| write::write_file(sb, limits, &p.path, &p.content))
            .await
    }

    #[tool(
        description = "Replace text in a file and return a unified diff. Each oldText must occur exactly once (or set replaceAll); whitespace-only differences in indentation are tolerated. dryRun previews without writing.",
        annotations(title = "Edit file", read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false),
        output_schema = output_schema::<write::EditOutcome>()
    )]
    async fn edit_file(
        &self,
        Parameters(p): Parameters<EditFileParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.answer(move |sb, limits| write::edit_file(sb, limits, &p.path, &p.edits, p.dry_run))
            .await
    }

    #[tool(
        description = "Create a directory and any missing parents. Succeeds if it already exists.",
        annotations(title = "Create directory", read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = output_schema::<write::PathOutcome>()
    )]
    async fn create_directory(
        &self,
        Parameters(p): Parameters<PathParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.answer(move |sb, _| write::create_directory(sb, &p.path))
            .await
    }

    #[tool(
        description = "List a directory's entries, marked [DIR], [FILE] or [LINK], sorted by name.",
        annotations(title = "List directory", read_only_hint = true, open_world_hint = false),
        output_schema = output_schema::<list::Listing>()
    )]
    async fn list_directory(
        &self,
        Parameters(p): Parameters<PathParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.answer(move |sb, limits| list::list_directory(sb, limits, &p.path))
            .await
    }

    #[tool(
        description = "List a directory's entries with file sizes and totals, sorted by name or by size.",
        annotations(title = "List directory with sizes", read_only_hint = true, open_world_hint = false),
        output_schema = output_schema::<list::SizedListing>()
    )]
    async fn list_directory_with_sizes(
        &self,
        Parameters(p): Parameters<ListWithSizesParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.answer(move |sb, limits| list::list_with_sizes(sb, limits, &p.path, p.sort_by))
            .await
    }

    #[tool(
        description = "Recursive tree of a directory as JSON ({name, type, children}). Symlinked directories are shown but not followed; depth and size are limited.",
        annotations(title = "Directory tree", read_only_hint = true, open_world_hint = false),
        output_schema = output_schema::<list::Tree>()
    )]
    async fn directory_tree(
        &self,
        Parameters(p): Parameters<DirectoryTreeParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.answer(move |sb, limits| {
            list::directory_tree(sb, limits, &p.path, &p.exclude_patterns)
        })
        .await
    }

    #[tool(
        description = "Move or rename a file or directory. Fails if the destination exists: nothing is ever overwritten.",
        annotations(title = "Move file", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false),
        output_schema = output_schema::<write::MoveOutcome>()
    )]
    async fn move_file(
        &self,
        Parameters(p): Parameters<MoveFileParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.answer(move |sb, _| write::move_file(sb, &p.source, &p.destination))
            .await
    }

    #[tool(
        description = "Find files and directories whose path (relative to `path`) matches a glob. Returns absolute paths.",
        annotations(title = "Search files", read_only_hint = true, open_world_hint = false),
        output_schema = output_schema::<search::FileMatches>()
    )]
    async fn search_files(
        &self,
        Parameters(p): Parameters<SearchFilesParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.answer(move |sb, limits| {
            search::search_files(sb, limits, &p.path, &p.pattern, &p.exclude_patterns)
        })
        .await
    }

    #[tool(
        description = "Search file contents with a regular expression (ripgrep's engine). Returns matching lines with line numbers and optional context; binary files are skipped; .gitignore can be honoured.",
        annotations(title = "Search file contents", read_only_hint = true, open_world_hint = false),
        output_schema = output_schema::<search::ContentMatches>()
    )]
    async fn search_file_contents(
        &self,
        Parameters(p): Parameters<SearchContentsParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.answer(move |sb, limits| {
            search::search_contents(
                sb,
                limits,
                &search::ContentQuery {
                    path: &p.path,
                    pattern: &p.pattern,
                    include: &p.include_patterns,
                    exclude: &p.exclude_patterns,
                    case_insensitive: p.case_insensitive,
                    context_lines: p.context_lines.min(MAX_CONTEXT_LINES),
                    respect_gitignore: p.respect_gitignore,
                    max_results: p.max_results,
                },
            )
        })
        .await
    }

    #[tool(
        description = "Size, times, type and permissions of a file or directory.",
        annotations(title = "Get file info", read_only_hint = true, open_world_hint = false),
        output_schema = output_schema::<list::FileInfo>()
    )]
    async fn get_file_info(
        &self,
        Parameters(p): Parameters<PathParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.answer(move |sb, _| list::file_info(sb, &p.path)).await
    }

    #[tool(
        description = "The directories this server may access.",
        annotations(title = "List allowed directories", read_only_hint = true, open_world_hint = false),
        output_schema = output_schema::<AllowedDirectories>()
    )]
    async fn list_allowed_directories(&self) -> Result<CallToolResult, ErrorData> {
        let sandbox = self.sandbox().await;
        Ok(success(&AllowedDirectories {
            directories: sandbox
                .roots()
                .iter()
                .map(|r| r.path.display().to_string())
                .collect(),
        }))
    }

    #[tool(
        description = "Delete a file or a symlink (never its target). Directories are refused; use delete_directory.",
        annotations(title = "Delete file", read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false),
        output_schema = output_schema::<write::PathOutcome>()
    )]
    async fn delete_file(
        &self,
        Parameters(p): Parameters<PathParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.answer(move |sb, _| write::delete_file(sb, &p.path))
            .await
    }

    #[tool(
        description = "Delete a directory. A non-empty directory is deleted only with recursive: true. Symlinks inside are removed, not followed. An allowed root itself cannot be deleted.",
        annotations(title = "Delete directory", read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false),
        output_schema = output_schema::<write::PathOutcome>()
    )]
    async fn delete_directory(
        &self,
        Parameters(p): Parameters<DeleteDirectoryParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.answer(move |sb, _| write::delete_directory(sb, &p.path, p.recursive))
            .await
    }
}

#[tool_handler(router = self.shared.router)]
impl ServerHandler for FsServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("switchboard-fs", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Filesystem access confined to the allowed directories (see list_allowed_directories). \
                 Paths may be absolute or relative to the first allowed directory.",
            )
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.refresh_client_roots(&context).await;
    }

    async fn on_roots_list_changed(&self, context: NotificationContext<RoleServer>) {
        self.refresh_client_roots(&context).await;
    }
}
