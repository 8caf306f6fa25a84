//! Indicators of compromise: typed values, import and export, and hunting.
//!
//! - [`kind`]: the types (ours, and the names DFIR-IRIS, MISP and STIX give them) and
//!   TLP levels.
//! - [`canon`]: validation and the canonical form of each type (refanged, case-folded
//!   where case does not matter, compressed IPv6, network-address CIDRs, normalised
//!   URLs), and type detection for bare values.
//! - [`import`]: CSV (DFIR-IRIS and MISP headers, or ours), plain lists, STIX 2.1
//!   bundles and MISP event JSON, read as streams with a result per record.
//! - [`export`]: the same formats out.
//! - [`hunt`]: one pass over an event's fields for every IOC together.
//!
//! Nothing here does I/O beyond the readers and writers it is given.

pub mod canon;
pub mod export;
pub mod hunt;
pub mod import;
pub mod kind;

pub use canon::{canonicalize, detect, refang};
pub use hunt::{Hit, Hunter, Indicator};
pub use kind::{IocType, Tlp};
