//! Inference over exchanges: what endpoint a request hit, how it authenticated, what
//! sensitive data it carried and what its bodies look like.
//!
//! Owns the per-exchange analysis. Each concern is its own module with a pure, bounded API so
//! that the engine (one per worker) can run them on the hot path and the inventory can merge
//! their results:
//! - [`template`]: concrete paths → endpoint templates, learnt per host.
//! - [`body`]: `Content-Encoding` decoding with bomb caps, JSON/form/multipart walking, schemas.
//! - [`sensitive`]: value classifiers (email, card, SSN, keys …) and masking/hashing.
//! - [`auth`]: how a request authenticates (Basic, Bearer/JWT, API key, session cookie).
pub mod auth;
pub mod body;
pub mod sensitive;
pub mod template;
