//! Who began an upload: recorded with it for the chain of custody.

/// Who uploads: the user of the call (empty for a service).
#[derive(Debug, Clone, Default)]
pub(crate) struct Uploader {
    pub id: String,
    pub name: String,
}

impl Uploader {
    pub(crate) fn of<T>(request: &tonic::Request<T>) -> Uploader {
        match casescope_proto::identity::Identity::of(request) {
            Some(identity) if identity.author().is_some() => Uploader {
                id: identity.user_id.clone(),
                name: identity.username.clone(),
            },
            _ => Uploader::default(),
        }
    }
}
