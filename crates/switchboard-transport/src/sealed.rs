//! Sealed session ids: the `Mcp-Session-Id` a session-era client receives is an AEAD token that
//! carries the session's state, so any replica holding the key can resume the session.
//!
//! Session-era clients (Streamable HTTP 2025-11-25 and older) send every request of a session
//! with the id the server chose at `initialize`. Behind a load balancer those requests reach
//! different replicas, and a plain random id means nothing to a replica that did not create it.
//! Instead of a shared session table, the id itself holds what a replica needs to rebuild the
//! session: the client's `initialize` parameters, the subject the session is bound to, and when
//! it was issued, sealed with ChaCha20-Poly1305 under a key every replica loads at start.
//!
//! rmcp already knows how to rebuild a session from an external [`SessionStore`]: for an
//! unknown id it calls `load`, spawns a fresh server and replays `initialize` into it. So rmcp
//! keeps its own short internal id, and the [`seal_session_ids`] middleware translates at the
//! edge: it opens the client's token into the internal id (and hands the sealed state to
//! [`SealedSessionStore::load`] for that request), and on the `initialize` answer it replaces
//! the internal id with a new token. A token that fails to open, is bound to another subject,
//! has expired or was ended with `DELETE` gets the same 404 as an unknown session, so the
//! client starts a new one, as the specification asks.
//!
//! Keys: the first key seals, every key opens (rotation: add the new key first, keep the old
//! one until its sessions have expired, then drop it). Each key is parsed once at start; a
//! request costs one base64 decode and one AEAD open, no key derivation.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{Request, State},
    http::{HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rmcp::{
    model::InitializeRequestParams,
    transport::streamable_http_server::session::{SessionState, SessionStore, SessionStoreError},
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The header rmcp reads and writes.
const SESSION_HEADER: &str = "mcp-session-id";
/// First byte of every token: the format, so a later one can be told apart.
const FORMAT_V1: u8 = 1;
/// Bytes naming the key a token was sealed with (a prefix of the key's SHA-256).
const KEY_ID_LEN: usize = 4;
/// Header bytes: format, key id, nonce.
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// Bytes of a session key.
pub const SESSION_KEY_LEN: usize = 32;
/// Longest token accepted, in characters: far above any real one (a few hundred), so a
/// hostile header costs at most this much decoding.
const MAX_TOKEN_CHARS: usize = 16 * 1024;
/// Sessions ended with `DELETE` remembered at most, so their tokens stay refused.
const MAX_REVOKED: usize = 100_000;
/// Opened tokens remembered at most (a few hundred bytes each): more than the sessions a
/// replica holds at once in the measured sizing (10,000).
const MAX_VERIFIED: usize = 16_384;

/// Why a session key or token was refused.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("session key {index} is not base64 of exactly 32 bytes")]
    BadKey { index: usize },
    #[error("no session key given")]
    NoKeys,
    #[error("session id is not a sealed token")]
    Malformed,
    #[error("session id was sealed with a key this server does not hold")]
    UnknownKey,
    #[error("session id failed authentication")]
    Forged,
    #[error("session has expired")]
    Expired,
    #[error("session belongs to another subject")]
    WrongSubject,
    #[error("session was ended")]
    Revoked,
    #[error("session state could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

struct SessionKey {
    id: [u8; KEY_ID_LEN],
    key: LessSafeKey,
}

impl SessionKey {
    fn new(bytes: &[u8]) -> Option<Self> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).ok()?;
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest.as_ref()[..KEY_ID_LEN]);
        Some(Self {
            id,
            key: LessSafeKey::new(unbound),
        })
    }
}

/// The keys that seal (the first) and open (all) session ids.
pub struct SessionKeys {
    keys: Vec<SessionKey>,
    /// True for a key made at start: sessions then survive neither a restart nor a move to
    /// another replica, which the banner should say.
    ephemeral: bool,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key ids only: never the key material.
        let ids: Vec<String> = self
            .keys
            .iter()
            .map(|k| k.id.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        f.debug_struct("SessionKeys")
            .field("key_ids", &ids)
            .field("ephemeral", &self.ephemeral)
            .finish()
    }
}

impl SessionKeys {
    /// Keys from base64 text (standard or URL-safe alphabet, padding optional), each exactly
    /// 32 bytes; the first seals.
    pub fn from_base64<S: AsRef<str>>(encoded: &[S]) -> Result<Self, SealError> {
        if encoded.is_empty() {
            return Err(SealError::NoKeys);
        }
        let keys = encoded
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let bytes = decode_key(text.as_ref().trim()).ok_or(SealError::BadKey { index })?;
                if bytes.len() != SESSION_KEY_LEN {
                    return Err(SealError::BadKey { index });
                }
                SessionKey::new(&bytes).ok_or(SealError::BadKey { index })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            keys,
            ephemeral: false,
        })
    }

    /// One random key, made now: sessions survive neither a restart nor another replica.
    pub fn ephemeral() -> Self {
        let mut bytes = [0u8; SESSION_KEY_LEN];
        // Without the OS's randomness nothing here is safe; this fails only on a broken system.
        getrandom::fill(&mut bytes).expect("the operating system's random number generator");
        let key = SessionKey::new(&bytes).expect("32 bytes is a ChaCha20-Poly1305 key");
        Self {
            keys: vec![key],
            ephemeral: true,
        }
    }

    /// Whether these keys were made at start rather than configured.
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    fn sealing(&self) -> &SessionKey {
        // `from_base64` and `ephemeral` both guarantee at least one key.
        &self.keys[0]
    }

    fn find(&self, id: &[u8]) -> Option<&SessionKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

fn decode_key(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let unpadded = text.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(unpadded)
        .ok()
        .or_else(|| STANDARD.decode(text).ok())
        .or_else(|| URL_SAFE.decode(text).ok())
}

/// Says which subject a request acts for (the authenticated identity), so a session can only
/// be continued by the subject that opened it. `None` when there is no authentication.
pub type SubjectOf = Arc<dyn Fn(&axum::http::Extensions) -> Option<String> + Send + Sync>;

/// Called with the internal id of every session ended with `DELETE`, so other replicas can be
/// told (see [`SessionSealer::on_revoke`]).
pub type RevokeHook = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Serialize)]
struct ClaimsOut<'a> {
    sid: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    init: &'a InitializeRequestParams,
}

#[derive(Deserialize)]
struct ClaimsIn {
    sid: String,
    iat: u64,
    #[serde(default)]
    sub: Option<String>,
    init: Box<RawValue>,
}

/// What an opened token says.
#[derive(Debug)]
pub struct OpenedSession {
    /// rmcp's internal session id.
    pub sid: String,
    /// The client's `initialize` parameters, as sealed (JSON).
    init: Arc<RawValue>,
}

/// What an authenticated token says, before the checks that depend on the request and the
/// time (age, subject, revocation).
#[derive(Clone)]
struct Verified {
    sid: Arc<str>,
    iat: u64,
    sub: Option<Arc<str>>,
    init: Arc<RawValue>,
}

/// Seals and opens session ids, and remembers what the current requests need for rmcp's
/// restore path. One per HTTP listener; shared by the middleware and the [`SessionStore`].
pub struct SessionSealer {
    keys: SessionKeys,
    /// Tokens older than this are refused; zero accepts any age.
    max_age: Duration,
    subject_of: Option<SubjectOf>,
    /// Internal id -> `initialize` parameters rmcp stored for a session it just created,
    /// taken by the middleware when it seals the answer's id.
    issued: Mutex<HashMap<Arc<str>, InitializeRequestParams>>,
    /// Internal id -> (sealed `initialize` parameters, requests using them): what `load`
    /// answers while a request with that id is in flight.
    opened: Mutex<HashMap<String, (Arc<RawValue>, usize)>>,
    /// Internal ids ended with `DELETE`, with when their tokens would expire anyway.
    revoked: Mutex<HashMap<String, SystemTime>>,
    /// Tokens that authenticated, and what they said: a session's later requests skip the
    /// base64 decode, the AEAD open and the JSON parse. Keyed by the whole token, so only a
    /// token that authenticated can ever match; age, subject and revocation are still checked
    /// on every request.
    verified: Mutex<HashMap<Box<[u8]>, Verified>>,
    on_revoke: Mutex<Option<RevokeHook>>,
}

impl fmt::Debug for SessionSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSealer")
            .field("keys", &self.keys)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl SessionSealer {
    /// A sealer with `keys`, refusing tokens older than `max_age` (zero: never).
    pub fn new(keys: SessionKeys, max_age: Duration) -> Self {
        Self {
            keys,
            max_age,
            subject_of: None,
            issued: Mutex::default(),
            opened: Mutex::default(),
            revoked: Mutex::default(),
            verified: Mutex::default(),
            on_revoke: Mutex::default(),
        }
    }

    /// Binds each session to the subject `subject_of` reads from the request.
    pub fn with_subject(mut self, subject_of: SubjectOf) -> Self {
        self.subject_of = Some(subject_of);
        self
    }

    /// Whether the keys were made at start (see [`SessionKeys::is_ephemeral`]).
    pub fn is_ephemeral(&self) -> bool {
        self.keys.is_ephemeral()
    }

    /// Calls `hook` whenever a client ends a session with `DELETE` here.
    pub fn on_revoke(&self, hook: RevokeHook) {
        if let Ok(mut slot) = self.on_revoke.lock() {
            *slot = Some(hook);
        }
    }

    /// Refuses the session `sid` from now on (a `DELETE` seen here or on another replica).
    pub fn revoke(&self, sid: &str) {
        let until = if self.max_age.is_zero() {
            // Without an age limit a token never expires; remember it for a day, bounded.
            SystemTime::now() + Duration::from_secs(86_400)
        } else {
            SystemTime::now() + self.max_age
        };
        if let Ok(mut revoked) = self.revoked.lock() {
            if revoked.len() >= MAX_REVOKED {
                let now = SystemTime::now();
                revoked.retain(|_, expiry| *expiry > now);
                if revoked.len() >= MAX_REVOKED {
                    // Still full of live entries: drop the one closest to expiring.
                    if let Some(oldest) = revoked
                        .iter()
                        .min_by_key(|(_, expiry)| **expiry)
                        .map(|(sid, _)| sid.clone())
                    {
                        revoked.remove(&oldest);
                    }
                }
            }
            revoked.insert(sid.to_owned(), until);
        }
    }

    fn is_revoked(&self, sid: &str) -> bool {
        self.revoked
            .lock()
            .map(|r| r.get(sid).is_some_and(|until| *until > SystemTime::now()))
            .unwrap_or(false)
    }

    /// Seals a session's state into the token a client will send as `Mcp-Session-Id`.
    pub fn seal(
        &self,
        sid: &str,
        init: &InitializeRequestParams,
        subject: Option<&str>,
    ) -> Result<String, SealError> {
        let claims = ClaimsOut {
            sid,
            iat: unix_secs(SystemTime::now()),
            sub: subject,
            init,
        };
        let plaintext = serde_json::to_vec(&claims)?;
        let key = self.keys.sealing();
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Malformed)?;
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16);
        out.push(FORMAT_V1);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        let mut sealed = plaintext;
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&out[..1 + KEY_ID_LEN]),
                &mut sealed,
            )
            .map_err(|_| SealError::Malformed)?;
        out.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a token, checking its key, integrity, age, subject and revocation.
    pub fn open(&self, token: &[u8], subject: Option<&str>) -> Result<OpenedSession, SealError> {
        let cached = self
            .verified
            .lock()
            .ok()
            .and_then(|verified| verified.get(token).cloned());
        let claims = match cached {
            Some(claims) => claims,
            None => {
                let claims = self.authenticate(token)?;
                if let Ok(mut verified) = self.verified.lock() {
                    if verified.len() >= MAX_VERIFIED {
                        // Bounded by forgetting: a forgotten token is authenticated again.
                        verified.clear();
                    }
                    verified.insert(token.into(), claims.clone());
                }
                claims
            }
        };
        if !self.max_age.is_zero() {
            let age = unix_secs(SystemTime::now()).saturating_sub(claims.iat);
            if age > self.max_age.as_secs() {
                return Err(SealError::Expired);
            }
        }
        if claims.sub.as_deref() != subject {
            return Err(SealError::WrongSubject);
        }
        if self.is_revoked(&claims.sid) {
            return Err(SealError::Revoked);
        }
        Ok(OpenedSession {
            sid: claims.sid.to_string(),
            init: claims.init,
        })
    }

    /// Decodes a token and checks its format, key and integrity: what it says, unchecked
    /// against the time and the request.
    fn authenticate(&self, token: &[u8]) -> Result<Verified, SealError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(SealError::Malformed);
        }
        let mut raw = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| SealError::Malformed)?;
        if raw.len() < HEADER_LEN + 16 || raw[0] != FORMAT_V1 {
            return Err(SealError::Malformed);
        }
        let key = self
            .keys
            .find(&raw[1..1 + KEY_ID_LEN])
            .ok_or(SealError::UnknownKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&raw[1 + KEY_ID_LEN..HEADER_LEN]);
        let (header, body) = raw.split_at_mut(HEADER_LEN);
        let plaintext = key
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&header[..1 + KEY_ID_LEN]),
                body,
            )
            .map_err(|_| SealError::Forged)?;
        let claims: ClaimsIn = serde_json::from_slice(plaintext).map_err(|_| SealError::Forged)?;
        Ok(Verified {
            sid: claims.sid.into(),
            iat: claims.iat,
            sub: claims.sub.map(Arc::from),
            init: Arc::from(claims.init),
        })
    }

    fn subject(&self, extensions: &axum::http::Extensions) -> Option<String> {
        self.subject_of.as_ref().and_then(|f| f(extensions))
    }

    /// Makes `opened`'s state available to `load` until the returned guard drops.
    fn hold(self: &Arc<Self>, opened: OpenedSession) -> HeldSession {
        let init = opened.init;
        if let Ok(mut held) = self.opened.lock() {
            held.entry(opened.sid.clone())
                .and_modify(|(_, uses)| *uses += 1)
                .or_insert((init, 1));
        }
        HeldSession {
            sealer: self.clone(),
            sid: opened.sid,
        }
    }
}

struct HeldSession {
    sealer: Arc<SessionSealer>,
    sid: String,
}

impl Drop for HeldSession {
    fn drop(&mut self) {
        if let Ok(mut held) = self.sealer.opened.lock()
            && let Some((_, uses)) = held.get_mut(&self.sid)
        {
            *uses -= 1;
            if *uses == 0 {
                held.remove(&self.sid);
            }
        }
    }
}

/// The [`SessionStore`] rmcp consults: `store` hands a new session's parameters to the
/// middleware for sealing, `load` answers from the token the current request carried, and
/// `delete` revokes.
#[derive(Debug, Clone)]
pub struct SealedSessionStore(pub Arc<SessionSealer>);

#[async_trait::async_trait]
impl SessionStore for SealedSessionStore {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let init = self
            .0
            .opened
            .lock()
            .ok()
            .and_then(|held| held.get(session_id).map(|(init, _)| init.clone()));
        match init {
            Some(init) => {
                let params: InitializeRequestParams = serde_json::from_str(init.get())?;
                Ok(Some(SessionState::new(params)))
            }
            None => Ok(None),
        }
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        if let Ok(mut issued) = self.0.issued.lock() {
            issued.insert(Arc::from(session_id), state.initialize_params.clone());
        }
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        self.0.revoke(session_id);
        let hook = self.0.on_revoke.lock().ok().and_then(|h| h.clone());
        if let Some(hook) = hook {
            hook(session_id);
        }
        Ok(())
    }
}

fn session_not_found() -> Response {
    // The same answer rmcp gives an unknown session, so a refused token reveals nothing.
    (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response()
}

/// Axum middleware around `/mcp`: opens sealed session ids on the way in and seals new ones on
/// the way out.
pub async fn seal_session_ids(
    State(sealer): State<Arc<SessionSealer>>,
    mut request: Request,
    next: Next,
) -> Response {
    let subject = sealer.subject(request.extensions());
    let held = match request.headers().get(SESSION_HEADER) {
        None => None,
        Some(token) => match sealer.open(token.as_bytes(), subject.as_deref()) {
            Ok(opened) => {
                let Ok(internal) = HeaderValue::from_str(&opened.sid) else {
                    return session_not_found();
                };
                request.headers_mut().insert(SESSION_HEADER, internal);
                Some(sealer.hold(opened))
            }
            Err(why) => {
                tracing::debug!(%why, "refused a session id");
                return session_not_found();
            }
        },
    };
    let is_post = request.method() == axum::http::Method::POST;
    let mut response = next.run(request).await;
    if held.is_some() {
        // The session existed; rmcp names it only in answers to `initialize`.
        return if is_post {
            crate::coalesce::coalesce_event_stream(response).await
        } else {
            response
        };
    }
    let Some(sid) = response
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
    else {
        return response;
    };
    let init = sealer
        .issued
        .lock()
        .ok()
        .and_then(|mut issued| issued.remove(sid));
    let Some(init) = init else {
        return response;
    };
    match sealer
        .seal(sid, &init, subject.as_deref())
        .ok()
        .and_then(|token| HeaderValue::from_str(&token).ok())
    {
        Some(token) => {
            response.headers_mut().insert(SESSION_HEADER, token);
            response
        }
        None => {
            tracing::error!("could not seal a session id");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not seal the session id",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init() -> InitializeRequestParams {
        serde_json::from_value(serde_json::json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"sampling": {}},
            "clientInfo": {"name": "t", "version": "1"}
        }))
        .expect("initialize params")
    }

    fn key(byte: u8) -> String {
        URL_SAFE_NO_PAD.encode([byte; SESSION_KEY_LEN])
    }

    fn sealer(keys: &[String], max_age: Duration) -> SessionSealer {
        SessionSealer::new(SessionKeys::from_base64(keys).expect("keys"), max_age)
    }

    #[test]
    fn a_sealed_id_opens_to_its_session() {
        let s = sealer(&[key(1)], Duration::from_secs(60));
        let token = s.seal("abc", &init(), Some("alice")).expect("seal");
        let opened = s.open(token.as_bytes(), Some("alice")).expect("open");
        assert_eq!(opened.sid, "abc");
        let params: InitializeRequestParams =
            serde_json::from_str(opened.init.get()).expect("params");
        assert_eq!(params.client_info.name, "t");
    }

    #[test]
    fn another_subject_cannot_continue_a_session() {
        let s = sealer(&[key(1)], Duration::from_secs(60));
        let token = s.seal("abc", &init(), Some("alice")).expect("seal");
        // Remembered as authenticated by alice's request; the subject is still checked.
        assert_eq!(
            s.open(token.as_bytes(), Some("alice")).expect("open").sid,
            "abc"
        );
        assert!(matches!(
            s.open(token.as_bytes(), Some("mallory")),
            Err(SealError::WrongSubject)
        ));
        assert!(matches!(
            s.open(token.as_bytes(), None),
            Err(SealError::WrongSubject)
        ));
    }

    #[test]
    fn any_changed_byte_is_refused() {
        let s = sealer(&[key(1)], Duration::from_secs(60));
        let token = s.seal("abc", &init(), None).expect("seal");
        // The genuine token is remembered as authenticated; no altered copy may match it.
        s.open(token.as_bytes(), None).expect("genuine");
        let raw = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let bad = URL_SAFE_NO_PAD.encode(bad);
            assert!(s.open(bad.as_bytes(), None).is_err(), "byte {i} flipped");
        }
        assert!(matches!(
            s.open(b"not a token", None),
            Err(SealError::Malformed)
        ));
        assert!(matches!(
            s.open(uuid_like().as_bytes(), None),
            Err(SealError::Malformed)
        ));
    }

    fn uuid_like() -> String {
        "0b6a8f8e-3f1c-4a53-9b8e-2f1d6c3b9a10".into()
    }

    #[test]
    fn rotation_opens_old_tokens_and_seals_with_the_new_key() {
        let old = sealer(&[key(1)], Duration::from_secs(60));
        let old_token = old.seal("old", &init(), None).expect("seal");
        let rotated = sealer(&[key(2), key(1)], Duration::from_secs(60));
        assert_eq!(
            rotated
                .open(old_token.as_bytes(), None)
                .expect("old key")
                .sid,
            "old"
        );
        let new_token = rotated.seal("new", &init(), None).expect("seal");
        // A replica that has not yet got the new key refuses the new token cleanly.
        assert!(matches!(
            old.open(new_token.as_bytes(), None),
            Err(SealError::UnknownKey)
        ));
        // Once the old key is dropped, its tokens are refused.
        let dropped = sealer(&[key(2)], Duration::from_secs(60));
        assert!(matches!(
            dropped.open(old_token.as_bytes(), None),
            Err(SealError::UnknownKey)
        ));
    }

    #[test]
    fn expired_and_revoked_tokens_are_refused() {
        let s = sealer(&[key(1)], Duration::from_secs(60));
        let claims = ClaimsOut {
            sid: "x",
            iat: unix_secs(SystemTime::now()) - 3600,
            sub: None,
            init: &init(),
        };
        // Seal an hour-old token by hand.
        let plaintext = serde_json::to_vec(&claims).expect("json");
        let k = s.keys.sealing();
        let nonce = [7u8; NONCE_LEN];
        let mut out = vec![FORMAT_V1];
        out.extend_from_slice(&k.id);
        out.extend_from_slice(&nonce);
        let mut body = plaintext;
        k.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&out[..1 + KEY_ID_LEN]),
                &mut body,
            )
            .expect("seal");
        out.extend_from_slice(&body);
        let token = URL_SAFE_NO_PAD.encode(out);
        for _ in 0..2 {
            // The second time from the remembered claims: the age is checked again.
            assert!(matches!(
                s.open(token.as_bytes(), None),
                Err(SealError::Expired)
            ));
        }

        let live = s.seal("y", &init(), None).expect("seal");
        // Opened once (so it is remembered as authenticated), then ended: still refused.
        assert_eq!(s.open(live.as_bytes(), None).expect("live").sid, "y");
        s.revoke("y");
        assert!(matches!(
            s.open(live.as_bytes(), None),
            Err(SealError::Revoked)
        ));
    }

    #[test]
    fn remembered_tokens_are_bounded() {
        let s = sealer(&[key(1)], Duration::from_secs(60));
        let first = s.seal("first", &init(), None).expect("seal");
        s.open(first.as_bytes(), None).expect("open");
        for i in 0..MAX_VERIFIED {
            let token = s.seal(&format!("s{i}"), &init(), None).expect("seal");
            s.open(token.as_bytes(), None).expect("open");
            let held = s.verified.lock().expect("lock").len();
            assert!(held <= MAX_VERIFIED, "{held} remembered");
        }
        // Forgotten or not, the first token still opens.
        assert_eq!(s.open(first.as_bytes(), None).expect("open").sid, "first");
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(matches!(
            SessionKeys::from_base64(&["c2hvcnQ="]),
            Err(SealError::BadKey { index: 0 })
        ));
        assert!(matches!(
            SessionKeys::from_base64::<&str>(&[]),
            Err(SealError::NoKeys)
        ));
        let standard = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert!(SessionKeys::from_base64(&[standard]).is_ok());
        let debug = format!("{:?}", SessionKeys::from_base64(&[key(3)]).expect("key"));
        assert!(!debug.contains(&key(3)), "Debug must not show key material");
    }
}
