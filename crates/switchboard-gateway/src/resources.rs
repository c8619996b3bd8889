//! Prompts, resources, resource templates and completion, aggregated from every upstream.
//!
//! **Prompt names** follow the tool rules exactly: `upstream__prompt` by default, the same
//! `prefix` modes, fitted to `^[a-zA-Z0-9_-]{1,64}$` by [`naming::assign`]; the tool
//! allow/deny/rename/description settings are about tools and do not apply to prompts.
//!
//! **Resource URIs** cannot be prefixed like names: they are URIs (clients parse them, and
//! templates are expanded by the client), and an upstream's URIs may use any scheme. With
//! `prefix = "always"` or `"conditional"`, the gateway exposes
//! `switchboard://<upstream>/<original URI, percent-encoded>`: a valid URI whatever the
//! original was, reversible without any table (the upstream name is the authority, the path
//! decodes to the original), and stable when other upstreams come and go. `conditional` is
//! namespaced like `always` because collisions between URIs (and between templates, whose
//! expansions cannot be enumerated) cannot be decided from the lists. A template is rewritten
//! by encoding only its literal parts and keeping its `{…}` expressions, so the client's
//! expansion decodes back to the upstream's own expansion (one caveat: a value whose expansion
//! contains `%XX` is decoded once more than the upstream would have). With `prefix = "never"`
//! URIs are exposed unchanged and routed to the upstream that lists the URI, or whose template
//! matches it, or, failing both, the only `never` upstream serving resources.
//!
//! Lists are cached per upstream and refetched after the upstream's `*/list_changed`, a
//! reconnect or the tools TTL. Listing is fail-open like `tools/list`: an upstream that cannot
//! list is skipped (unless `fail_closed`). Content URIs inside results (embedded resources,
//! resource links) are not rewritten; only `resources/read` contents' `uri` are.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use rmcp::{
    ErrorData, Peer, RoleClient,
    model::{
        ClientRequest, CompleteRequest, CompleteRequestParams, CompleteResult, GetPromptRequest,
        GetPromptRequestParams, GetPromptResponse, MetaObject, Prompt, ReadResourceRequest,
        ReadResourceRequestParams, ReadResourceResponse, Reference, Resource, ResourceContents,
        ResourceTemplate, ResultType, ServerCapabilities, ServerResult, SubscribeRequestParams,
        UnsubscribeRequestParams,
    },
};

use crate::{
    config::PrefixMode,
    error::GatewayError,
    gateway::Gateway,
    naming::{self, Candidate},
    passthrough::{self, Downstream, Round},
    upstream::UpstreamRuntime,
};

/// The scheme of namespaced resource URIs.
pub const SCHEME: &str = "switchboard://";

// resources/subscribe is the session-era mechanism, still forwarded for session-era clients.
#[allow(deprecated)]
use rmcp::model::{SubscribeRequest, UnsubscribeRequest};
// ---- the URI scheme -------------------------------------------------------------------------

fn encode_into(out: &mut String, text: &str) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// `switchboard://<upstream>/<percent-encoded uri>`.
pub fn namespace_uri(upstream: &str, uri: &str) -> String {
    let mut out = format!("{SCHEME}{upstream}/");
    encode_into(&mut out, uri);
    out
}

/// A namespaced template: literal parts encoded, `{…}` expressions kept for the client.
pub fn namespace_template(upstream: &str, template: &str) -> String {
    let mut out = format!("{SCHEME}{upstream}/");
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        encode_into(&mut out, &rest[..open]);
        out.push_str(&rest[open..=close]);
        rest = &rest[close + 1..];
    }
    encode_into(&mut out, rest);
    out
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let high = hex(*bytes.get(i + 1)?)?;
            let low = hex(*bytes.get(i + 2)?)?;
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Splits a namespaced URI (or template) into the upstream name and the original.
pub fn parse_uri(uri: &str) -> Option<(&str, String)> {
    let rest = uri.strip_prefix(SCHEME)?;
    let (upstream, encoded) = rest.split_once('/')?;
    Some((upstream, decode(encoded)?))
}

/// Whether `uri` is an expansion of `template` (each `{…}` matches any text).
fn template_matches(template: &str, uri: &str) -> bool {
    let mut literals = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        literals.push(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => rest = &rest[open + close + 1..],
            None => return template == uri,
        }
    }
    literals.push(rest);
    let Some((first, others)) = literals.split_first() else {
        return false;
    };
    let Some(mut remaining) = uri.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = others.split_last() else {
        return remaining.is_empty();
    };
    for literal in middle {
        match remaining.find(literal) {
            Some(at) if !literal.is_empty() => remaining = &remaining[at + literal.len()..],
            Some(_) => {}
            None => return false,
        }
    }
    remaining.ends_with(last)
}

// ---- per-upstream caches --------------------------------------------------------------------

struct Slot<T> {
    cached: Mutex<Option<(Arc<Vec<T>>, Instant)>>,
    stale: AtomicBool,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            cached: Mutex::new(None),
            stale: AtomicBool::new(false),
        }
    }
}

impl<T> Slot<T> {
    fn fresh(&self, ttl: std::time::Duration) -> Option<Arc<Vec<T>>> {
        if self.stale.load(Ordering::Acquire) {
            return None;
        }
        let guard = self.cached.lock().ok()?;
        let (list, fetched) = guard.as_ref()?;
        (fetched.elapsed() < ttl).then(|| list.clone())
    }
    fn store(&self, list: Vec<T>) -> Arc<Vec<T>> {
        let list = Arc::new(list);
        if let Ok(mut guard) = self.cached.lock() {
            *guard = Some((list.clone(), Instant::now()));
        }
        list
    }
}

/// One upstream's prompt, resource and template lists, as last fetched.
#[derive(Default)]
pub struct UpstreamLists {
    prompts: Slot<Prompt>,
    resources: Slot<Resource>,
    templates: Slot<ResourceTemplate>,
}

impl UpstreamLists {
    /// After `notifications/prompts/list_changed`.
    pub fn prompts_changed(&self) {
        self.prompts.stale.store(true, Ordering::Release);
    }
    /// After `notifications/resources/list_changed` (templates may have changed too).
    pub fn resources_changed(&self) {
        self.resources.stale.store(true, Ordering::Release);
        self.templates.stale.store(true, Ordering::Release);
    }
    /// After a reconnect: the new connection may serve different lists.
    pub fn all_changed(&self) {
        self.prompts_changed();
        self.resources_changed();
    }
}

fn list_error(upstream: &UpstreamRuntime, err: rmcp::service::ServiceError) -> GatewayError {
    GatewayError::List {
        upstream: upstream.name().to_string(),
        message: err.to_string(),
    }
}

/// The upstream's capabilities (connecting if needed).
async fn capabilities(
    upstream: &UpstreamRuntime,
) -> Result<(Peer<RoleClient>, ServerCapabilities), GatewayError> {
    let peer = upstream.peer().await?;
    let caps = upstream.relay.capabilities(Some(&peer)).unwrap_or_default();
    Ok((peer, caps))
}

macro_rules! fetch_list {
    ($fn_name:ident, $slot:ident, $item:ty, $has:expr, $list:ident) => {
        async fn $fn_name(upstream: &UpstreamRuntime) -> Result<Arc<Vec<$item>>, GatewayError> {
            let lists = &upstream.lists;
            if let Some(list) = lists.$slot.fresh(upstream.config.tools_ttl()) {
                return Ok(list);
            }
            let (peer, caps) = capabilities(upstream).await?;
            if !$has(&caps) {
                return Ok(lists.$slot.store(Vec::new()));
            }
            // Cleared before listing, so a change announced during the listing is not lost.
            lists.$slot.stale.store(false, Ordering::Release);
            match tokio::time::timeout(upstream.config.list_timeout(), peer.$list()).await {
                Ok(Ok(list)) => Ok(lists.$slot.store(list)),
                Ok(Err(err)) => {
                    lists.$slot.stale.store(true, Ordering::Release);
                    Err(list_error(upstream, err))
                }
                Err(_) => {
                    lists.$slot.stale.store(true, Ordering::Release);
                    Err(GatewayError::Timeout {
                        upstream: upstream.name().to_string(),
                        timeout: upstream.config.list_timeout(),
                    })
                }
            }
        }
    };
}

fn has_prompts(caps: &ServerCapabilities) -> bool {
    caps.prompts.is_some()
}
fn has_resources(caps: &ServerCapabilities) -> bool {
    caps.resources.is_some()
}

// rmcp's client keeps its own TTL cache of 2026-07-28 list results and clears it itself on the
// same list_changed notifications that mark these stale.
fetch_list!(prompts_of, prompts, Prompt, has_prompts, list_all_prompts);
fetch_list!(
    resources_of,
    resources,
    Resource,
    has_resources,
    list_all_resources
);
fetch_list!(
    templates_of,
    templates,
    ResourceTemplate,
    has_resources,
    list_all_resource_templates
);

/// Lists from every upstream, concurrently; a failing upstream is skipped (logged) unless it
/// is `fail_closed`.
async fn gather<'a, T, F, Fut>(
    upstreams: &'a [Arc<UpstreamRuntime>],
    what: &str,
    fetch: F,
) -> Result<Vec<(&'a Arc<UpstreamRuntime>, Arc<Vec<T>>)>, GatewayError>
where
    F: Fn(&'a UpstreamRuntime) -> Fut,
    Fut: std::future::Future<Output = Result<Arc<Vec<T>>, GatewayError>>,
{
    let results = futures::future::join_all(upstreams.iter().map(|u| fetch(u))).await;
    let mut out = Vec::new();
    for (upstream, result) in upstreams.iter().zip(results) {
        match result {
            Ok(list) => out.push((upstream, list)),
            Err(err) if upstream.config.fail_closed => return Err(err),
            Err(err) => {
                tracing::warn!(upstream = %upstream.name(), %err, "skipping upstream in {what}");
            }
        }
    }
    Ok(out)
}

fn tag(meta: Option<MetaObject>, upstream: &str, original_key: &str, original: &str) -> MetaObject {
    let mut meta = meta.unwrap_or_else(|| MetaObject(Default::default()));
    meta.0.insert(
        "io.switchboard/upstream".into(),
        upstream.to_string().into(),
    );
    meta.0
        .insert(original_key.into(), original.to_string().into());
    meta
}

// ---- prompts --------------------------------------------------------------------------------

/// The aggregated prompts and the route from each exposed name to (upstream, its name).
pub struct PromptCatalog {
    pub prompts: Vec<Prompt>,
    routes: HashMap<String, (Arc<UpstreamRuntime>, String)>,
}

pub async fn prompt_catalog(gateway: &Gateway) -> Result<PromptCatalog, GatewayError> {
    let upstreams = gateway.upstreams();
    let lists = gather(&upstreams, "prompts/list", prompts_of).await?;
    let picked: Vec<(&Arc<UpstreamRuntime>, &Prompt)> = lists
        .iter()
        .flat_map(|(u, list)| list.iter().map(move |p| (*u, p)))
        .collect();
    let candidates: Vec<Candidate<'_>> = picked
        .iter()
        .map(|(u, p)| Candidate {
            upstream: u.name(),
            tool: &p.name,
            prefix: u.config.prefix,
        })
        .collect();
    let assigned = naming::assign(&candidates)?;
    let mut prompts = Vec::with_capacity(picked.len());
    let mut routes = HashMap::with_capacity(picked.len());
    for ((upstream, prompt), name) in picked.into_iter().zip(assigned) {
        let mut exposed = prompt.clone();
        exposed.name = name.exposed.clone();
        exposed.meta = Some(tag(
            exposed.meta.take(),
            upstream.name(),
            "io.switchboard/prompt",
            &prompt.name,
        ));
        routes.insert(name.exposed, (upstream.clone(), prompt.name.clone()));
        prompts.push(exposed);
    }
    Ok(PromptCatalog { prompts, routes })
}

fn rpc(err: GatewayError) -> ErrorData {
    match err {
        GatewayError::Rpc { error, .. } => error,
        GatewayError::Naming(_) => ErrorData::internal_error(err.to_string(), None),
        GatewayError::ProcessCapReached { .. } => crate::server::refused(&err),
        other => ErrorData::internal_error(other.to_string(), None),
    }
}

async fn route_prompt(
    gateway: &Gateway,
    exposed: &str,
) -> Result<(Arc<UpstreamRuntime>, String), ErrorData> {
    prompt_catalog(gateway)
        .await
        .map_err(rpc)?
        .routes
        .remove(exposed)
        .ok_or_else(|| ErrorData::invalid_params(format!("unknown prompt {exposed:?}"), None))
}

pub async fn list_prompts(gateway: &Gateway) -> Result<Vec<Prompt>, ErrorData> {
    Ok(prompt_catalog(gateway).await.map_err(rpc)?.prompts)
}

pub async fn get_prompt(
    gateway: &Gateway,
    request: GetPromptRequestParams,
    down: Option<&Downstream>,
) -> Result<GetPromptResponse, ErrorData> {
    let (upstream, name) = route_prompt(gateway, &request.name).await?;
    let first = (
        request.input_responses.clone(),
        request.request_state.clone(),
    );
    let round = passthrough::drive(
        &upstream,
        down,
        |responses, state| {
            let mut params = GetPromptRequestParams::new(name.clone());
            params.arguments = request.arguments.clone();
            params.input_responses = responses;
            params.request_state = state;
            ClientRequest::GetPromptRequest(GetPromptRequest::new(params))
        },
        |result| match result {
            ServerResult::GetPromptResult(r) => Some(Round::Done(r)),
            ServerResult::InputRequiredResult(r) => Some(Round::Input(r)),
            _ => None,
        },
        first,
    )
    .await
    .map_err(rpc)?;
    Ok(match round {
        // An older upstream's result has no resultType; 2026-07-28 clients need it (rmcp
        // removes it again for older clients).
        Round::Done(mut result) => {
            result.result_type = Some(ResultType::COMPLETE);
            GetPromptResponse::Complete(result)
        }
        Round::Input(input) => GetPromptResponse::InputRequired(input),
    })
}

// ---- resources ------------------------------------------------------------------------------

fn namespaced(upstream: &UpstreamRuntime) -> bool {
    upstream.config.prefix != PrefixMode::Never
}

pub async fn list_resources(gateway: &Gateway) -> Result<Vec<Resource>, ErrorData> {
    let upstreams = gateway.upstreams();
    let lists = gather(&upstreams, "resources/list", resources_of)
        .await
        .map_err(rpc)?;
    let mut out = Vec::new();
    for (upstream, list) in lists {
        for resource in list.iter() {
            let mut exposed = resource.clone();
            if namespaced(upstream) {
                exposed.uri = namespace_uri(upstream.name(), &resource.uri);
                exposed.meta = Some(tag(
                    exposed.meta.take(),
                    upstream.name(),
                    "io.switchboard/uri",
                    &resource.uri,
                ));
            }
            out.push(exposed);
        }
    }
    Ok(out)
}

pub async fn list_resource_templates(
    gateway: &Gateway,
) -> Result<Vec<ResourceTemplate>, ErrorData> {
    let upstreams = gateway.upstreams();
    let lists = gather(&upstreams, "resources/templates/list", templates_of)
        .await
        .map_err(rpc)?;
    let mut out = Vec::new();
    for (upstream, list) in lists {
        for template in list.iter() {
            let mut exposed = template.clone();
            if namespaced(upstream) {
                exposed.uri_template = namespace_template(upstream.name(), &template.uri_template);
                exposed.meta = Some(tag(
                    exposed.meta.take(),
                    upstream.name(),
                    "io.switchboard/uriTemplate",
                    &template.uri_template,
                ));
            }
            out.push(exposed);
        }
    }
    Ok(out)
}

/// The upstream and original URI behind an exposed URI (or URI template).
async fn route_uri(
    gateway: &Gateway,
    uri: &str,
) -> Result<(Arc<UpstreamRuntime>, String), ErrorData> {
    let unknown = || ErrorData::resource_not_found(format!("no resource {uri}"), None);
    let upstreams = gateway.upstreams();
    if let Some((name, original)) = parse_uri(uri)
        && let Some(upstream) = upstreams.iter().find(|u| u.name() == name && namespaced(u))
    {
        return Ok((upstream.clone(), original));
    }
    let bare: Vec<&Arc<UpstreamRuntime>> = upstreams.iter().filter(|u| !namespaced(u)).collect();
    if bare.is_empty() {
        return Err(unknown());
    }
    if bare.len() > 1 {
        for upstream in &bare {
            if let Ok(list) = resources_of(upstream).await
                && list.iter().any(|r| r.uri == uri)
            {
                return Ok(((*upstream).clone(), uri.to_string()));
            }
        }
        for upstream in &bare {
            if let Ok(list) = templates_of(upstream).await
                && list
                    .iter()
                    .any(|t| t.uri_template == uri || template_matches(&t.uri_template, uri))
            {
                return Ok(((*upstream).clone(), uri.to_string()));
            }
        }
    }
    // The only `never` upstream serving resources (known capabilities; else the first).
    let serving: Vec<&&Arc<UpstreamRuntime>> = bare
        .iter()
        .filter(|u| {
            u.relay
                .capabilities(None)
                .is_none_or(|c| c.resources.is_some())
        })
        .collect();
    match serving.as_slice() {
        [only] => Ok(((**only).clone(), uri.to_string())),
        _ => Err(unknown()),
    }
}

fn rewrite_contents(contents: &mut [ResourceContents], upstream: &str) {
    for content in contents {
        let uri = match content {
            ResourceContents::TextResourceContents { uri, .. } => uri,
            ResourceContents::BlobResourceContents { uri, .. } => uri,
            _ => continue,
        };
        *uri = namespace_uri(upstream, uri);
    }
}

pub async fn read_resource(
    gateway: &Gateway,
    request: ReadResourceRequestParams,
    down: Option<&Downstream>,
) -> Result<ReadResourceResponse, ErrorData> {
    let (upstream, original) = route_uri(gateway, &request.uri).await?;
    let first = (
        request.input_responses.clone(),
        request.request_state.clone(),
    );
    let round = passthrough::drive(
        &upstream,
        down,
        |responses, state| {
            let mut params = ReadResourceRequestParams::new(original.clone());
            params.input_responses = responses;
            params.request_state = state;
            ClientRequest::ReadResourceRequest(ReadResourceRequest::new(params))
        },
        |result| match result {
            ServerResult::ReadResourceResult(r) => Some(Round::Done(r)),
            ServerResult::InputRequiredResult(r) => Some(Round::Input(r)),
            _ => None,
        },
        first,
    )
    .await
    .map_err(rpc)?;
    Ok(match round {
        Round::Done(mut result) => {
            result.result_type = Some(ResultType::COMPLETE);
            if namespaced(&upstream) {
                rewrite_contents(&mut result.contents, upstream.name());
            }
            ReadResourceResponse::Complete(result)
        }
        Round::Input(input) => ReadResourceResponse::InputRequired(input),
    })
}

/// Forwards `resources/subscribe`; returns the upstream and original URI so the caller can
/// record the subscription for `notifications/resources/updated`.
#[allow(deprecated)] // resources/subscribe: session-era clients
pub async fn subscribe(
    gateway: &Gateway,
    uri: &str,
    down: Option<&Downstream>,
) -> Result<(Arc<UpstreamRuntime>, String), ErrorData> {
    let (upstream, original) = route_uri(gateway, uri).await?;
    let supported = upstream
        .relay
        .capabilities(None)
        .and_then(|c| c.resources)
        .and_then(|r| r.subscribe)
        .unwrap_or(false);
    if !supported {
        return Err(ErrorData::invalid_params(
            format!(
                "upstream {:?} does not support resources/subscribe",
                upstream.name()
            ),
            None,
        ));
    }
    let request = ClientRequest::SubscribeRequest(SubscribeRequest::new(
        SubscribeRequestParams::new(original.clone()),
    ));
    passthrough::send(&upstream, request, down)
        .await
        .map_err(rpc)?;
    Ok((upstream, original))
}

#[allow(deprecated)] // resources/subscribe: session-era clients
pub async fn unsubscribe(
    gateway: &Gateway,
    uri: &str,
    down: Option<&Downstream>,
) -> Result<(), ErrorData> {
    let (upstream, original) = route_uri(gateway, uri).await?;
    let request = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(
        UnsubscribeRequestParams::new(original),
    ));
    passthrough::send(&upstream, request, down)
        .await
        .map_err(rpc)?;
    Ok(())
}

/// The URI a client subscribed to, for an upstream's `notifications/resources/updated`.
pub fn exposed_uri(upstream: &UpstreamRuntime, uri: &str) -> String {
    if namespaced(upstream) {
        namespace_uri(upstream.name(), uri)
    } else {
        uri.to_string()
    }
}

// ---- completion -----------------------------------------------------------------------------

pub async fn complete(
    gateway: &Gateway,
    mut request: CompleteRequestParams,
    down: Option<&Downstream>,
) -> Result<CompleteResult, ErrorData> {
    let upstream = match &mut request.r#ref {
        Reference::Prompt(prompt) => {
            let (upstream, name) = route_prompt(gateway, &prompt.name).await?;
            prompt.name = name;
            upstream
        }
        Reference::Resource(resource) => {
            let (upstream, original) = route_uri(gateway, &resource.uri).await?;
            resource.uri = original;
            upstream
        }
        _ => {
            return Err(ErrorData::invalid_params(
                "unsupported completion reference",
                None,
            ));
        }
    };
    let has_completions = upstream
        .relay
        .capabilities(None)
        .is_some_and(|c| c.completions.is_some());
    if !has_completions {
        // Nothing to complete with: an empty answer, as the spec allows.
        let mut empty = CompleteResult::default();
        empty.result_type = Some(ResultType::COMPLETE);
        return Ok(empty);
    }
    request.meta = None;
    match passthrough::send(
        &upstream,
        ClientRequest::CompleteRequest(CompleteRequest::new(request)),
        down,
    )
    .await
    .map_err(rpc)?
    {
        ServerResult::CompleteResult(mut result) => {
            result.result_type = Some(ResultType::COMPLETE);
            Ok(result)
        }
        _ => Err(ErrorData::internal_error(
            "the upstream answered completion/complete with another result type",
            None,
        )),
    }
}

/// Whether any upstream has the capability `has` (from live or last-seen capabilities).
pub fn any_upstream(gateway: &Gateway, has: impl Fn(&ServerCapabilities) -> bool) -> bool {
    gateway
        .upstreams()
        .iter()
        .any(|u| u.relay.capabilities(None).is_some_and(|c| has(&c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip() {
        for uri in [
            "test://static-text",
            "file:///tmp/a b/ü.txt",
            "https://example.com/x?y=1&z=%20#frag",
            "",
        ] {
            let exposed = namespace_uri("conf", uri);
            assert!(exposed.starts_with("switchboard://conf/"), "{exposed}");
            assert!(
                exposed[SCHEME.len()..]
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'#' && b != b'?'),
                "{exposed}"
            );
            assert_eq!(parse_uri(&exposed), Some(("conf", uri.to_string())));
        }
        assert_eq!(parse_uri("switchboard://conf/%zz"), None);
        assert_eq!(parse_uri("test://x"), None);
    }

    #[test]
    fn templates_expand_back_to_the_upstream_expansion() {
        let template = namespace_template("conf", "test://template/{id}/data");
        assert_eq!(
            template,
            "switchboard://conf/test%3A%2F%2Ftemplate%2F{id}%2Fdata"
        );
        // What a client's RFC 6570 expansion of {id} = 42 gives, routed back:
        let expanded = template.replace("{id}", "42");
        assert_eq!(
            parse_uri(&expanded),
            Some(("conf", "test://template/42/data".to_string()))
        );
        // The template itself (completion references) decodes to the original template.
        assert_eq!(
            parse_uri(&template),
            Some(("conf", "test://template/{id}/data".to_string()))
        );
    }

    #[test]
    fn template_matching() {
        assert!(template_matches(
            "test://template/{id}/data",
            "test://template/7/data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://other/7/data"
        ));
        assert!(template_matches("a/{x}", "a/anything"));
        assert!(!template_matches("a/{x}/b", "a/1/c"));
        assert!(template_matches("plain", "plain"));
    }
}
