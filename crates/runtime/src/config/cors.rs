//! `cors_allowed_origins`: the exact browser origins allowed to call the API from
//! another origin (gRPC-web). Empty (the default): no cross-origin grant at all — the
//! web app served by the same process is same-origin and needs none.

/// Parses a comma-separated list of origins (`https://host[:port]`); every problem is
/// pushed onto `errors`. A wildcard is refused: the API takes credentials.
pub(super) fn resolve(value: Option<&str>, errors: &mut Vec<String>) -> Vec<String> {
    let mut origins = Vec::new();
    for origin in value.unwrap_or_default().split(',').map(str::trim) {
        if origin.is_empty() {
            continue;
        }
        if origin.contains('*') {
            errors.push(format!(
                "cors_allowed_origins: {origin:?}: wildcards are refused; list each origin exactly"
            ));
            continue;
        }
        let Some((scheme, rest)) = origin.split_once("://") else {
            errors.push(format!(
                "cors_allowed_origins: {origin:?} is not an origin (https://host[:port])"
            ));
            continue;
        };
        let host_ok = !rest.is_empty()
            && !rest.contains(['/', '?', '#', '@', ' '])
            && rest
                .rsplit_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_ok());
        if !matches!(scheme, "http" | "https") || !host_ok {
            errors.push(format!(
                "cors_allowed_origins: {origin:?} is not an origin (scheme http or https, a host, an optional port, nothing else)"
            ));
            continue;
        }
        origins.push(origin.to_ascii_lowercase());
    }
    origins
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn origins_are_exact_and_wildcards_refused() {
        let mut errors = Vec::new();
        assert_eq!(
            resolve(
                Some("https://casescope.example.org, http://localhost:5173"),
                &mut errors
            ),
            ["https://casescope.example.org", "http://localhost:5173"]
        );
        assert!(errors.is_empty());
        for bad in [
            "*",
            "https://*.example.org",
            "example.org",
            "https://x/path",
            "ftp://x",
            "https://x:port",
        ] {
            let mut errors = Vec::new();
            assert!(resolve(Some(bad), &mut errors).is_empty(), "{bad}");
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
        }
        assert!(resolve(None, &mut Vec::new()).is_empty());
    }
}
