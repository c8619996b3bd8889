//! The connector's MCP face: an rmcp `ServerHandler` whose tools are the operations.
//!
//! The gateway mounts it in-process like a built-in server; `switchboard server openapi`
//! serves it on its own. One `reqwest::Client` per connector carries the timeout and the
//! redirect rule.

use std::{collections::HashMap, sync::Arc};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
        PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    },
    service::RequestContext,
};

use crate::{
    OpenApiError,
    auth::Auth,
    config::OpenApiConfig,
    operation::{self, Operation},
    spec::{self, Spec},
};

/// A REST service as MCP tools (cheap to clone).
#[derive(Clone)]
pub struct OpenApiConnector {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) base_url: url::Url,
    pub(crate) auth: Auth,
    pub(crate) max_response_bytes: u64,
    operations: Vec<Operation>,
    by_name: HashMap<String, usize>,
    tools: Vec<Tool>,
    title: String,
}

impl std::fmt::Debug for OpenApiConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenApiConnector")
            .field("base_url", &self.inner.base_url.as_str())
            .field("auth", &self.inner.auth)
            .field("tools", &self.inner.tools.len())
            .finish()
    }
}

/// The HTTP client of one upstream: timeout and redirect rule from `config`.
pub fn http_client(config: &OpenApiConfig) -> Result<reqwest::Client, OpenApiError> {
    let max = config.max_redirects;
    let cross_origin = config.cross_origin_redirects;
    let policy = if max == 0 {
        reqwest::redirect::Policy::none()
    } else {
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max {
                return attempt.error(format!("more than {max} redirects (max_redirects)"));
            }
            let same_origin = attempt
                .previous()
                .first()
                .is_none_or(|first| first.origin() == attempt.url().origin());
            if same_origin || cross_origin {
                attempt.follow()
            } else {
                let origin = attempt.url().origin().ascii_serialization();
                attempt.error(format!(
                    "redirect to another origin ({origin}) refused (cross_origin_redirects = false)"
                ))
            }
        })
    };
    reqwest::Client::builder()
        .timeout(config.timeout())
        .redirect(policy)
        .user_agent(concat!("switchboard-openapi/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| OpenApiError::Http(crate::call::error_chain(&e)))
}

impl OpenApiConnector {
    /// Validates `config`, loads its document, reads its credentials from the environment.
    pub async fn load(config: &OpenApiConfig) -> Result<OpenApiConnector, OpenApiError> {
        config.validate()?;
        let http = http_client(config)?;
        let spec = spec::load(&config.spec, config.max_spec_bytes, &http).await?;
        OpenApiConnector::from_spec(config, &spec, http)
    }

    /// The connector of an already loaded document.
    pub fn from_spec(
        config: &OpenApiConfig,
        spec: &Spec,
        http: reqwest::Client,
    ) -> Result<OpenApiConnector, OpenApiError> {
        config.validate()?;
        let catalog = operation::build(spec, config)?;
        let base_url = base_url(config, spec)?;
        let auth = Auth::from_config(config.auth.as_ref())?;
        let tools: Vec<Tool> = catalog.operations.iter().map(tool_of).collect();
        let by_name = catalog
            .operations
            .iter()
            .enumerate()
            .map(|(i, op)| (op.tool_name.clone(), i))
            .collect();
        let title = spec
            .document
            .pointer("/info/title")
            .and_then(|t| t.as_str())
            .unwrap_or("OpenAPI service")
            .to_string();
        tracing::info!(
            service = %title,
            base_url = %base_url,
            tools = tools.len(),
            skipped = catalog.skipped.len(),
            "OpenAPI connector ready"
        );
        Ok(OpenApiConnector {
            inner: Arc::new(Inner {
                http,
                base_url,
                auth,
                max_response_bytes: config.max_response_bytes,
                operations: catalog.operations,
                by_name,
                tools,
                title,
            }),
        })
    }

    pub fn tools(&self) -> &[Tool] {
        &self.inner.tools
    }

    pub fn operations(&self) -> &[Operation] {
        &self.inner.operations
    }

    /// Calls the tool `name`; `None` when there is no such tool.
    pub async fn call(
        &self,
        name: &str,
        arguments: Option<rmcp::model::JsonObject>,
    ) -> Option<rmcp::model::CallToolResult> {
        let index = *self.inner.by_name.get(name)?;
        let operation = &self.inner.operations[index];
        Some(crate::call::call(&self.inner, operation, arguments.unwrap_or_default()).await)
    }
}

/// The tool an operation is exposed as.
pub fn tool_of(operation: &Operation) -> Tool {
    let mut tool = Tool::new(
        operation.tool_name.clone(),
        operation.description.clone(),
        Arc::new(operation.input_schema.clone()),
    );
    tool.annotations = Some(operation.annotations.clone());
    tool
}

/// `base_url`, or the document's first server (relative ones against the document's URL,
/// `{variables}` replaced by their defaults).
fn base_url(config: &OpenApiConfig, spec: &Spec) -> Result<url::Url, OpenApiError> {
    if let Some(base) = &config.base_url {
        return url::Url::parse(base)
            .map_err(|e| OpenApiError::BaseUrl(format!("`base_url` {base:?}: {e}")));
    }
    let server = spec.document.pointer("/servers/0");
    let Some(template) = server.and_then(|s| s.get("url")).and_then(|u| u.as_str()) else {
        return Err(OpenApiError::BaseUrl(
            "the document lists no servers: set `base_url`".into(),
        ));
    };
    let mut raw = template.to_string();
    if let Some(variables) = server
        .and_then(|s| s.get("variables"))
        .and_then(|v| v.as_object())
    {
        for (name, variable) in variables {
            if let Some(default) = variable.get("default").and_then(|d| d.as_str()) {
                raw = raw.replace(&format!("{{{name}}}"), default);
            }
        }
    }
    let resolved = match (url::Url::parse(&raw), &spec.url) {
        (Ok(url), _) => Ok(url),
        (Err(url::ParseError::RelativeUrlWithoutBase), Some(document_url)) => {
            document_url.join(&raw).map_err(|e| e.to_string())
        }
        (Err(e), _) => Err(e.to_string()),
    };
    match resolved {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
        _ => Err(OpenApiError::BaseUrl(format!(
            "/servers/0/url {template:?} is not an absolute http(s) URL: set `base_url`"
        ))),
    }
}

impl ServerHandler for OpenApiConnector {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "switchboard-openapi",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(format!(
                "The REST API \"{}\" as tools, one per operation.",
                self.inner.title
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.inner.tools.clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        let index = *self.inner.by_name.get(name)?;
        self.inner.tools.get(index).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match self.call(&request.name, request.arguments).await {
            Some(result) => Ok(result.into()),
            None => Err(ErrorData::invalid_params(
                format!("unknown tool {:?}", request.name),
                None,
            )),
        }
    }
}
