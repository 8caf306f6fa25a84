//! The CaseScope wire contract in Rust: code generated from `proto/casescope/**` (message
//! types, gRPC clients and server traits), the bus message types (serde-serialisable, so
//! facts travel as JSON), the error model every service maps to `tonic::Status`, and the
//! paging rules shared by all list RPCs.
//!
//! This crate holds no behaviour of any service; services depend on it, never on each other.

pub mod channel;
pub mod error;
pub mod identity;
pub mod ids;
pub mod paging;
pub mod scan;
pub mod time;

/// Encoded `FileDescriptorSet` of every CaseScope .proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/casescope_descriptor.bin"));

#[allow(clippy::all, clippy::pedantic)]
pub mod common {
    pub mod v1 {
        tonic::include_proto!("casescope.common.v1");
    }
}

#[allow(clippy::all, clippy::pedantic)]
pub mod cases {
    pub mod v1 {
        tonic::include_proto!("casescope.cases.v1");
    }
}

#[allow(clippy::all, clippy::pedantic)]
pub mod ingest {
    pub mod v1 {
        tonic::include_proto!("casescope.ingest.v1");
    }
}

#[allow(clippy::all, clippy::pedantic)]
pub mod detect {
    pub mod v1 {
        tonic::include_proto!("casescope.detect.v1");
    }
}

#[allow(clippy::all, clippy::pedantic)]
pub mod ioc {
    pub mod v1 {
        tonic::include_proto!("casescope.ioc.v1");
    }
}

#[allow(clippy::all, clippy::pedantic)]
pub mod report {
    pub mod v1 {
        tonic::include_proto!("casescope.report.v1");
    }
}

#[allow(clippy::all, clippy::pedantic)]
pub mod integrations {
    pub mod v1 {
        tonic::include_proto!("casescope.integrations.v1");
    }
}

#[allow(clippy::all, clippy::pedantic)]
pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("casescope.gateway.v1");
    }
}

#[allow(clippy::all, clippy::pedantic)]
pub mod bus {
    pub mod v1 {
        tonic::include_proto!("casescope.bus.v1");
    }
}

/// Fully-qualified gRPC service names of every service in the contract, with the
/// service (process role) that implements it. Used to route, to answer
/// `UNIMPLEMENTED` clearly, and by the RBAC matrix test later.
pub const GRPC_SERVICES: &[(&str, &str)] = &[
    ("casescope.cases.v1.CasesService", "cases"),
    ("casescope.cases.v1.FileRecordsService", "cases"),
    ("casescope.ingest.v1.IngestService", "ingest"),
    ("casescope.detect.v1.DetectService", "detect"),
    ("casescope.ioc.v1.IocService", "ioc"),
    ("casescope.report.v1.ReportService", "report"),
    (
        "casescope.integrations.v1.IntegrationsService",
        "integrations",
    ),
    ("casescope.gateway.v1.AuthService", "gateway"),
    ("casescope.gateway.v1.AdminService", "gateway"),
    ("casescope.gateway.v1.CaseMembersService", "gateway"),
];
