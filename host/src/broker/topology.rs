//! Which cluster nodes hold a queue: parsed from `CLUSTER NODES`.

use serde::Serialize;

/// A node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterNode {
    /// Node id.
    pub id: String,
    /// `host:port`.
    pub addr: String,
    /// `master` or `replica`.
    pub role: String,
}

/// A queue's slot and the nodes holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueLocation {
    /// Queue name.
    pub queue: String,
    /// The slot of `{queue}`.
    pub slot: u16,
    /// Master first, then its replicas.
    pub nodes: Vec<ClusterNode>,
}

/// The master serving `slot` and its replicas, from `CLUSTER NODES` text.
pub(crate) fn nodes_for_slot(text: &str, slot: u16) -> Vec<ClusterNode> {
    struct Line<'a> {
        id: &'a str,
        addr: String,
        master: bool,
        master_id: &'a str,
        failed: bool,
        slots: Vec<(u16, u16)>,
    }
    let lines: Vec<Line> = text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let flags = f[2];
            let addr = f[1].split('@').next().unwrap_or(f[1]).to_owned();
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|n| (n, n)),
                })
                .collect();
            Some(Line {
                id: f[0],
                addr,
                master: flags.contains("master"),
                master_id: f[3],
                failed: flags.contains("fail") && !flags.contains("fail?"),
                slots,
            })
        })
        .collect();
    let Some(master) = lines
        .iter()
        .find(|l| l.master && !l.failed && l.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
    else {
        return Vec::new();
    };
    let mut nodes = vec![ClusterNode {
        id: master.id.to_owned(),
        addr: master.addr.clone(),
        role: "master".into(),
    }];
    let mut replicas: Vec<ClusterNode> = lines
        .iter()
        .filter(|l| !l.master && l.master_id == master.id && !l.failed)
        .map(|l| ClusterNode {
            id: l.id.to_owned(),
            addr: l.addr.clone(),
            role: "replica".into(),
        })
        .collect();
    replicas.sort_by(|a, b| a.addr.cmp(&b.addr));
    nodes.extend(replicas);
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383
d4 127.0.0.1:7003@17003 slave b2 0 0 2 connected
e5 127.0.0.1:7004@17004 slave c3 0 0 3 connected
f6 127.0.0.1:7005@17005 slave a1 0 0 1 connected
";

    #[test]
    fn finds_master_and_replicas_of_a_slot() {
        let nodes = nodes_for_slot(NODES, 9450);
        assert_eq!(nodes.len(), 2);
        assert_eq!(
            (nodes[0].id.as_str(), nodes[0].addr.as_str()),
            ("b2", "127.0.0.1:7001")
        );
        assert_eq!(nodes[0].role, "master");
        assert_eq!(
            (nodes[1].id.as_str(), nodes[1].role.as_str()),
            ("d4", "replica")
        );
    }
}
