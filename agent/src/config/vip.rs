//! The control-plane VIP's settings (`routing.control_plane_vip` and its
//! health check) as types: a host prefix, a URL split into base and path.

use ipnet::IpNet;
use std::net::IpAddr;
use std::time::Duration;

/// The health check's default target.
pub const DEFAULT_HEALTH_URL: &str = "https://127.0.0.1:6443/livez";
/// The default time between checks.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// How long the VIP stays bound after its withdrawal by default: ToRs move
/// within tens of milliseconds of the UPDATE.
pub const DEFAULT_UNBIND_DELAY: Duration = Duration::from_secs(1);
/// The longest unbind delay accepted (shutdown waits for it).
pub const MAX_UNBIND_DELAY: Duration = Duration::from_secs(30);

/// The VIP as a host prefix: an address, or an address with /32 (/128).
pub fn parse_vip(text: &str) -> Result<IpNet, String> {
    let net: IpNet = match text.parse::<IpAddr>() {
        Ok(ip) => IpNet::from(ip),
        Err(_) => text
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or a /32 or /128 prefix"))?,
    };
    if net.prefix_len() != net.max_prefix_len() {
        return Err(format!("{text:?}: a VIP is one address (/32 or /128)"));
    }
    if net.addr().is_unspecified() || net.addr().is_loopback() || net.addr().is_multicast() {
        return Err(format!("{text:?} cannot be a VIP (unspecified, loopback or multicast)"));
    }
    Ok(net)
}

/// The health URL, split into the base the client connects to and the
/// path it asks.
pub fn parse_health_url(text: &str) -> Result<(String, String), String> {
    let uri: http::Uri = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{text:?}: must be an http:// or https:// URL")),
    }
    let authority = uri.authority().ok_or_else(|| format!("{text:?}: no host"))?;
    let base = format!("{}://{}", uri.scheme_str().unwrap_or("https"), authority);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    Ok((base, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vip_is_one_unicast_address() {
        assert_eq!(
            parse_vip("10.0.0.250").unwrap(),
            "10.0.0.250/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_vip("fd00::250/128").unwrap(),
            "fd00::250/128".parse::<IpNet>().unwrap()
        );
        assert!(parse_vip("10.0.0.0/24").unwrap_err().contains("one address"));
        assert!(parse_vip("127.0.0.1").is_err());
        assert!(parse_vip("vip").unwrap_err().contains("not an IP address"));
    }

    #[test]
    fn the_health_url_is_http_or_https() {
        assert_eq!(
            parse_health_url(DEFAULT_HEALTH_URL).unwrap(),
            ("https://127.0.0.1:6443".to_string(), "/livez".to_string())
        );
        assert_eq!(
            parse_health_url("http://10.0.0.10:8080/readyz?verbose").unwrap().1,
            "/readyz?verbose"
        );
        assert!(parse_health_url("ftp://x/livez").is_err());
        assert!(parse_health_url("/livez").is_err());
    }
}
