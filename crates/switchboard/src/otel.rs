//! OpenTelemetry trace export (OTLP over HTTP) for `switchboard serve`.
//!
//! Logging is set up in `main` before any configuration is read, but the exporter's settings
//! live in the gateway's configuration (`[observability.otlp]`). So the subscriber always
//! carries one [`layer`] whose OpenTelemetry half is empty until `serve` calls [`install`].
//! It is a `OnceLock` rather than a `tracing_subscriber::reload` handle because
//! `tracing-opentelemetry` finds its span context by downcasting the subscriber, which a
//! reloadable layer does not allow (`Span::set_parent`/`Span::context` would silently fail);
//! a value set once and never moved can be downcast to safely.
//!
//! Until installed, the layer's filter says "never" for every callsite, so it costs nothing and
//! the gateway's DEBUG stage spans stay disabled under the default log filter. Once installed,
//! it sees the gateway crate's spans at DEBUG and up (the `tools/call` span and one child per
//! stack layer, [`switchboard_gateway::stack::trace`]) and its events at INFO and up (span
//! events), whatever `--log` says for the console.

use std::{any::TypeId, sync::OnceLock, time::Duration};

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{
    Resource,
    runtime::Tokio,
    trace::{
        BatchConfigBuilder, Sampler, SdkTracer, SdkTracerProvider,
        span_processor_with_async_runtime::BatchSpanProcessor,
    },
};
use switchboard_gateway::otlp::OtlpConfig;
use tracing::{Event, Level, Metadata, span};
use tracing_subscriber::{
    Registry,
    layer::{Context, Filter, Layer},
};

/// The crate whose spans and events are exported.
const EXPORTED_CRATE: &str = "switchboard_gateway";

type OtelLayer = tracing_opentelemetry::OpenTelemetryLayer<Registry, SdkTracer>;

static INSTALLED: OnceLock<OtelLayer> = OnceLock::new();

/// The subscriber's trace-export slot: inert until [`install`].
pub fn layer() -> tracing_subscriber::filter::Filtered<LateLayer, LateFilter, Registry> {
    LateLayer.with_filter(LateFilter)
}

/// The exporter's lifetime: [`TraceExport::shutdown`] exports what is still queued (so does
/// dropping it, on an early error return).
pub struct TraceExport {
    provider: Option<SdkTracerProvider>,
}

impl TraceExport {
    /// Flushes queued spans and stops the exporter (each export bounded by `timeout_secs`).
    /// Spans that end later are dropped.
    pub async fn shutdown(mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        // The provider's shutdown blocks until the export task (on this runtime) answers.
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("switchboard: trace export shutdown: {err}"),
            Err(err) => eprintln!("switchboard: trace export shutdown: {err}"),
        }
    }
}

impl Drop for TraceExport {
    fn drop(&mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        // Blocking here must not stall the runtime the export task runs on.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            let _ = tokio::task::block_in_place(|| provider.shutdown());
        }
    }
}

/// Starts exporting traces with `config` (on the current tokio runtime). Once per process.
pub fn install(config: &OtlpConfig) -> anyhow::Result<TraceExport> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_timeout(Duration::from_secs(config.timeout_secs));
    if let Some(endpoint) = &config.endpoint {
        exporter = exporter.with_endpoint(endpoint.clone());
    }
    if !config.headers.is_empty() {
        exporter = exporter.with_headers(config.headers.clone().into_iter().collect());
    }
    let exporter = exporter
        .build()
        .context("[observability.otlp]: could not build the OTLP exporter")?;
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(config.max_queue_size)
        .with_max_export_batch_size(config.max_export_batch_size)
        .with_scheduled_delay(Duration::from_millis(config.batch_delay_ms))
        .build();
    let processor = BatchSpanProcessor::builder(exporter, Tokio)
        .with_batch_config(batch)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("switchboard");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_location(false);
    if INSTALLED.set(layer).is_err() {
        anyhow::bail!("trace export is already installed");
    }
    // Callsites cached as "never" by the filter must be asked again.
    tracing::callsite::rebuild_interest_cache();
    Ok(TraceExport {
        provider: Some(provider),
    })
}

/// Whether the exporter sees this span or event (see the module docs).
fn exported(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    let ours = target == EXPORTED_CRATE
        || target
            .strip_prefix(EXPORTED_CRATE)
            .is_some_and(|rest| rest.starts_with("::"));
    let level = if metadata.is_span() {
        Level::DEBUG
    } else {
        Level::INFO
    };
    ours && *metadata.level() <= level
}

/// The filter of [`layer`]: nothing until installed, then [`exported`].
pub struct LateFilter;

impl<S> Filter<S> for LateFilter {
    fn enabled(&self, metadata: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        INSTALLED.get().is_some() && exported(metadata)
    }

    fn callsite_enabled(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if INSTALLED.get().is_some() && exported(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(if INSTALLED.get().is_some() {
            tracing::level_filters::LevelFilter::DEBUG
        } else {
            tracing::level_filters::LevelFilter::OFF
        })
    }
}

/// The OpenTelemetry layer once installed; until then, nothing.
pub struct LateLayer;

impl Layer<Registry> for LateLayer {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, Registry>) {
        if let Some(layer) = INSTALLED.get() {
            layer.on_new_span(attrs, id, ctx);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, Registry>) {
        if let Some(layer) = INSTALLED.get() {
            layer.on_record(id, values, ctx);
        }
    }

    fn on_follows_from(&self, id: &span::Id, follows: &span::Id, ctx: Context<'_, Registry>) {
        if let Some(layer) = INSTALLED.get() {
            layer.on_follows_from(id, follows, ctx);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, Registry>) {
        if let Some(layer) = INSTALLED.get() {
            layer.on_event(event, ctx);
        }
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, Registry>) {
        if let Some(layer) = INSTALLED.get() {
            layer.on_enter(id, ctx);
        }
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, Registry>) {
        if let Some(layer) = INSTALLED.get() {
            layer.on_exit(id, ctx);
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, Registry>) {
        if let Some(layer) = INSTALLED.get() {
            layer.on_close(id, ctx);
        }
    }

    // SAFETY: the installed layer lives in a static that is set once and never moved or
    // dropped, so pointers into it (its `WithContext`, which `Span::set_parent` and
    // `Span::context` use) stay valid for the rest of the process.
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        let layer = INSTALLED.get()?;
        // SAFETY: forwarded to the installed layer, under its own contract (see above).
        unsafe { <OtelLayer as Layer<Registry>>::downcast_raw(layer, id) }
    }
}
