//! Showing a Redis URL without its credentials, and reading a cluster URL.

/// The node URLs of a cluster URL (`redis+cluster://[user:password@]host:port[,host:port...]`,
/// or `rediss+cluster://` for TLS): one `redis://` (or `rediss://`) URL per listed node, each
/// with the credentials. `Ok(None)` for any other URL (a single server). A cluster has one
/// database, so a path other than `/` or `/0` is refused, and so is a query.
pub(crate) fn cluster_nodes(url: &str) -> Result<Option<Vec<String>>, String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("redis+cluster", rest)) => ("redis", rest),
        Some(("rediss+cluster", rest)) => ("rediss", rest),
        _ => return Ok(None),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if !matches!(tail, "" | "/" | "/0") {
        return Err(format!(
            "a cluster URL ends after its nodes (a cluster has only database 0, and takes no options), not with {:?}",
            redact(tail)
        ));
    }
    let (info, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("{scheme}://{info}{h}"))
        .collect();
    if nodes.is_empty() {
        return Err("a cluster URL names at least one node (host:port)".to_owned());
    }
    Ok(Some(nodes))
}

/// `url` with the password (and a lone user-info part, which Redis URLs may use as a password)
/// replaced by `***`, and `password`/`pass` query parameters (used by `redis+unix://` URLs)
/// hidden too. Everything that names the server in a message or a `Debug` output goes
/// through this.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    // The authority ends at the first '/', '?' or '#'; user info ends at its last '@'.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (info, host) = authority.split_at(at);
            match info.split_once(':') {
                Some((user, _password)) => format!("{user}:***{host}"),
                None => format!("***{host}"),
            }
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _))
                        if name.eq_ignore_ascii_case("password")
                            || name.eq_ignore_ascii_case("pass") =>
                    {
                        format!("{name}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::{cluster_nodes, redact};

    #[test]
    fn cluster_urls_list_their_nodes() {
        assert_eq!(cluster_nodes("redis://127.0.0.1:6379"), Ok(None));
        assert_eq!(
            cluster_nodes("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001/"),
            Ok(Some(vec![
                "redis://:pw@10.0.0.1:7000".to_owned(),
                "redis://:pw@10.0.0.2:7001".to_owned()
            ]))
        );
        assert_eq!(
            cluster_nodes("rediss+cluster://h:1"),
            Ok(Some(vec!["rediss://h:1".to_owned()]))
        );
        assert!(cluster_nodes("redis+cluster://h:1/2").is_err());
        assert!(cluster_nodes("redis+cluster://h:1?pass=x").is_err());
        assert!(cluster_nodes("redis+cluster://:pw@").is_err());
        assert_eq!(
            redact("redis+cluster://:s3cret@h1:1,h2:2"),
            "redis+cluster://:***@h1:1,h2:2"
        );
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("redis://:s3cret@cache.local:6379/2"),
            "redis://:***@cache.local:6379/2"
        );
        assert_eq!(
            redact("rediss://app:p%40ss@cache.local/0"),
            "rediss://app:***@cache.local/0"
        );
        assert_eq!(redact("redis://token@h:1"), "redis://***@h:1");
        assert_eq!(
            redact("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("not a url"), "not a url");
    }
}
