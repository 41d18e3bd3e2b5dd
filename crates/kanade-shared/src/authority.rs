//! Who may command the fleet (DESIGN.md, Authority): operators' and the backend's Ed25519 signing keys, the
//! root-signed trust list that names each with a role and a group scope, the signature every command, kill and
//! job-state value carries, and the pure check an agent makes before it obeys one. No I/O: keys come in as text
//! and go out as text; files are `kanade-ops`'s, headers the caller's.

pub mod check;
pub mod keys;
pub mod signature;
pub mod trust;

pub use check::{Act, Agent, Approval, Refusal, authorise};
pub use keys::{KeyError, PublicKey, SigningKey};
pub use signature::{Signature, SignatureError};
pub use trust::{SignedTrustList, TrustError, TrustList, TrustedKey};
