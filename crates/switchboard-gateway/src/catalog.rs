//! The aggregated tool catalog: every upstream's tools, filtered, renamed and given exposed
//! names, with the route from each exposed name back to its upstream.

use std::{collections::HashMap, sync::Arc};

use rmcp::model::{MetaObject, Tool};

use crate::{
    naming::{self, Candidate},
    upstream::UpstreamRuntime,
};

/// Where an exposed tool goes.
#[derive(Clone)]
pub struct Route {
    pub upstream: Arc<UpstreamRuntime>,
    /// The tool's name at the upstream.
    pub tool: String,
    /// Its annotations and schema traits, for the call stack (retries).
    pub hints: crate::stack::ToolHints,
}

/// One build of the catalog. Rebuilt only when an upstream's tool list changes.
pub struct Catalog {
    pub tools: Vec<Tool>,
    routes: HashMap<String, Route>,
    /// The upstream lists this build came from (pointer-compared to detect changes).
    sources: Vec<Option<Arc<Vec<Tool>>>>,
}

impl Catalog {
    pub fn route(&self, exposed: &str) -> Option<&Route> {
        self.routes.get(exposed)
    }

    /// True when `sources` are exactly the lists this catalog was built from.
    pub fn built_from(&self, sources: &[Option<Arc<Vec<Tool>>>]) -> bool {
        self.sources.len() == sources.len()
            && self.sources.iter().zip(sources).all(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            })
    }

    /// Builds the catalog from each upstream's current list (`None`: skipped, unavailable).
    pub fn build(
        upstreams: &[Arc<UpstreamRuntime>],
        sources: Vec<Option<Arc<Vec<Tool>>>>,
    ) -> Result<Catalog, naming::Collision> {
        // (upstream index, the upstream's tool, the name before prefixing)
        let mut picked: Vec<(usize, &Tool, String)> = Vec::new();
        for (index, (upstream, list)) in upstreams.iter().zip(&sources).enumerate() {
            let Some(list) = list else { continue };
            for tool in list.iter() {
                if !upstream.filter.allows(&tool.name) {
                    continue;
                }
                let renamed = upstream
                    .config
                    .rename
                    .get(tool.name.as_ref())
                    .cloned()
                    .unwrap_or_else(|| tool.name.to_string());
                picked.push((index, tool, renamed));
            }
        }
        let candidates: Vec<Candidate<'_>> = picked
            .iter()
            .map(|(index, _, renamed)| Candidate {
                upstream: upstreams[*index].name(),
                tool: renamed,
                prefix: upstreams[*index].config.prefix,
            })
            .collect();
        let assigned = naming::assign(&candidates)?;
        let mut tools = Vec::with_capacity(picked.len());
        let mut routes = HashMap::with_capacity(picked.len());
        for ((index, tool, _), name) in picked.iter().zip(assigned) {
            let upstream = &upstreams[*index];
            let mut exposed = (*tool).clone();
            exposed.name = name.exposed.clone().into();
            if let Some(description) = upstream.config.descriptions.get(tool.name.as_ref()) {
                exposed.description = Some(description.clone().into());
            }
            let mut meta = exposed
                .meta
                .take()
                .unwrap_or_else(|| MetaObject(Default::default()));
            meta.0.insert(
                "io.switchboard/upstream".into(),
                upstream.name().to_string().into(),
            );
            meta.0
                .insert("io.switchboard/tool".into(), tool.name.to_string().into());
            if let Some(original) = name.aliased_from {
                meta.0
                    .insert("io.switchboard/aliasOf".into(), original.into());
            }
            exposed.meta = Some(meta);
            routes.insert(
                name.exposed,
                Route {
                    upstream: upstream.clone(),
                    tool: tool.name.to_string(),
                    hints: crate::stack::ToolHints::of(tool),
                },
            );
            tools.push(exposed);
        }
        Ok(Catalog {
            tools,
            routes,
            sources,
        })
    }
}
