//! Human units in the config: byte sizes, durations, rates, fuel budgets
//! and network grants. A leaf: it imports nothing of wasq's.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A size in bytes: an integer, or a string such as `"64MiB"`, `"512 KiB"`,
/// `"1GB"`.
///
/// ```
/// use wasq::units::ByteSize;
/// assert_eq!("64MiB".parse::<ByteSize>().unwrap().0, 64 << 20);
/// assert_eq!("1.5 KB".parse::<ByteSize>().unwrap().0, 1500);
/// assert!("lots".parse::<ByteSize>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    /// Parsed by the `bytesize` crate: SI units (`KB`, `MB`, `GB`: powers
    /// of 1000) and binary ones (`KiB`, `MiB`, `GiB`: powers of 1024).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        s.parse::<bytesize::ByteSize>()
            .map(|size| ByteSize(size.as_u64()))
            .map_err(|e| {
                format!(
                    "{s:?} is not a size ({e}); write e.g. \"64MiB\", \"512KiB\" or a number of bytes"
                )
            })
    }
}

impl fmt::Display for ByteSize {
    /// In binary units with one decimal: `12.6 MiB`, `512.0 KiB`, `80 B`.
    ///
    /// ```
    /// use wasq::units::ByteSize;
    /// assert_eq!(ByteSize(13_212_672).to_string(), "12.6 MiB");
    /// assert_eq!(ByteSize(80).to_string(), "80 B");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64MiB\" or a number of bytes")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A duration written as `"30s"`, `"5m"`, `"250ms"`, `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| {
                de::Error::custom(format!(
                    "{text:?} is not a duration ({e}); write e.g. \"30s\" or \"5m\""
                ))
            })
    }
}

/// A rate: `count` events per `per`, written `"100/s"`, `"6000/m"`,
/// `"500/h"` or with any duration after the slash, `"10/30s"`.
///
/// ```
/// use std::time::Duration;
/// use wasq::units::Rate;
/// let rate: Rate = "100/s".parse().unwrap();
/// assert_eq!((rate.count, rate.per), (100, Duration::from_secs(1)));
/// assert_eq!("90/m".parse::<Rate>().unwrap().per_second(), 1.5);
/// assert_eq!("10/30s".parse::<Rate>().unwrap().to_string(), "10/30s");
/// assert!("fast".parse::<Rate>().is_err());
/// assert!("0/s".parse::<Rate>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events per period, at least 1.
    pub count: u32,
    /// The period, at least a millisecond.
    pub per: Duration,
}

impl Rate {
    /// Events per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "{text:?} is not a rate ({why}); write e.g. \"100/s\", \"6000/m\" or \"10/30s\""
            )
        };
        let (count, period) = text.split_once('/').ok_or_else(|| bad("no `/`"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| bad("the count is not a whole number"))?;
        if count == 0 {
            return Err(bad("the count must be at least 1"));
        }
        let period = period.trim();
        let per = match period {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => humantime::parse_duration(other).map_err(|_| bad("unknown period"))?,
        };
        if per < Duration::from_millis(1) {
            return Err(bad("the period must be at least 1ms"));
        }
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 if self.per.subsec_nanos() == 0 => "s".to_owned(),
            60 if self.per.subsec_nanos() == 0 => "m".to_owned(),
            3600 if self.per.subsec_nanos() == 0 => "h".to_owned(),
            86_400 if self.per.subsec_nanos() == 0 => "d".to_owned(),
            _ => humantime::format_duration(self.per).to_string(),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// A fuel budget: a number of instructions, or `"unlimited"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fuel(pub Option<u64>);

impl<'de> Deserialize<'de> for Fuel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Fuel;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive number of instructions or \"unlimited\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Fuel, E> {
                match u64::try_from(v) {
                    Ok(n) if n > 0 => Ok(Fuel(Some(n))),
                    _ => Err(E::custom("fuel must be positive, or \"unlimited\"")),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Fuel, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Fuel, E> {
                if v == "unlimited" {
                    Ok(Fuel(None))
                } else {
                    Err(E::custom(format!(
                        "fuel must be a number or \"unlimited\", not {v:?}"
                    )))
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The transport a network grant is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP connects (a bare `ip:port` grant, or `tcp:ip:port`).
    Tcp,
    /// UDP datagrams sent to, and received from, the address (`udp:ip:port`).
    Udp,
}

/// One `network` grant: where a guest may connect (TCP) or send datagrams
/// to and receive them from (UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketGrant {
    /// TCP or UDP.
    pub transport: Transport,
    /// The remote address.
    pub ip: std::net::IpAddr,
    /// The remote port, or any port.
    pub port: Option<u16>,
}

impl SocketGrant {
    /// Whether the grant covers `addr` over `transport`.
    pub fn allows(&self, transport: Transport, addr: std::net::SocketAddr) -> bool {
        self.transport == transport
            && self.ip == addr.ip()
            && self.port.is_none_or(|p| p == addr.port())
    }
}

/// Parses a network grant: `ip:port` or `tcp:ip:port` (TCP), `udp:ip:port`
/// (UDP); port `*` for any, IPv6 in brackets.
///
/// ```
/// use wasq::units::{Transport, parse_socket_grant};
/// let grant = parse_socket_grant("udp:[::1]:*").unwrap();
/// assert_eq!((grant.transport, grant.port), (Transport::Udp, None));
/// assert!(parse_socket_grant("example.com:80").is_err());
/// ```
pub fn parse_socket_grant(grant: &str) -> Result<SocketGrant, String> {
    let bad = || {
        format!(
            "network grant {grant:?} must be \"ip:port\" or \"ip:*\" (TCP), or \"udp:ip:port\", e.g. \"127.0.0.1:8080\""
        )
    };
    let (transport, rest) = if let Some(rest) = grant.strip_prefix("udp:") {
        (Transport::Udp, rest)
    } else if let Some(rest) = grant.strip_prefix("tcp:") {
        (Transport::Tcp, rest)
    } else {
        (Transport::Tcp, grant)
    };
    let (ip, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let ip = ip.parse().map_err(|_| bad())?;
    let port = match port {
        "*" => None,
        p => Some(p.parse().map_err(|_| bad())?),
    };
    Ok(SocketGrant {
        transport,
        ip,
        port,
    })
}
