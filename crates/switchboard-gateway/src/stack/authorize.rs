//! Authorization of a `tools/call` ([`crate::auth::policy`]): the outermost layer, so a denied
//! call costs nothing downstream (no rate-limit budget, no cache entry, no upstream work).
//!
//! Off (no layer state) without `[security.auth]` or `[security.authorization]`. A call without
//! a principal is the gateway's own and is not checked; every client call carries one (the
//! anonymous identity when the transport has none).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tower::{Layer, Service};

use crate::{auth::policy::Policies, error::GatewayError, stack::ToolCall};

#[derive(Clone)]
pub struct AuthorizeLayer {
    policies: Option<Arc<Policies>>,
}

impl AuthorizeLayer {
    pub fn new(policies: Option<Arc<Policies>>) -> AuthorizeLayer {
        AuthorizeLayer { policies }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;
    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            policies: self.policies.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    policies: Option<Arc<Policies>>,
}

impl<S> Service<ToolCall> for Authorize<S>
where
    S: Service<ToolCall, Error = GatewayError> + Send,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, GatewayError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ToolCall) -> Self::Future {
        if let (Some(policies), Some(principal)) = (&self.policies, &call.principal)
            && let Err(denial) =
                policies.check_call(principal, &call.exposed, call.arguments.as_ref())
        {
            tracing::info!(tool = %call.exposed, subject = %principal.subject, %denial, "tools/call denied");
            let err = GatewayError::Forbidden {
                tool: call.exposed.clone(),
                subject: principal.subject.clone(),
                reason: denial.to_string(),
            };
            return Box::pin(async move { Err(err) });
        }
        let future = self.inner.call(call);
        Box::pin(future)
    }
}
