//! Which CPUs the executors run on.
//!
//! `--cores N` should land on N distinct physical cores before it doubles up on
//! hyper-threads, and never on a CPU the process may not use (a container's cpuset, a
//! `taskset`): pinning to one fails inside glommio and surfaces late. It lives with
//! the configuration because `--cpus` and `--cores` are validated against it before
//! any executor starts. So the host list
//! is the intersection of the affinity mask (`Cpus_allowed_list` in
//! `/proc/self/status`) with glommio's online topology, ordered to spread.

use std::io;

use glommio::CpuSet;

use super::parse_cpu_list;

/// The CPUs this process may run on, in spreading order: one hyper-thread of every
/// physical core first, then the siblings.
pub fn available_cpus() -> io::Result<Vec<usize>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let allowed = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .ok_or_else(|| io::Error::other("no Cpus_allowed_list in /proc/self/status"))?;
    let allowed = parse_cpu_list(allowed).map_err(io::Error::other)?;
    let online = match CpuSet::online() {
        Ok(set) => set,
        // Without a topology, pin in affinity order.
        Err(_) => return Ok(allowed),
    };
    let located: Vec<Location> = online
        .into_iter()
        .filter(|l| allowed.contains(&l.cpu))
        .map(|l| Location {
            cpu: l.cpu,
            core: l.core,
            package: l.package,
            numa_node: l.numa_node,
        })
        .collect();
    Ok(spread_order(located))
}

/// One CPU's place in the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) cpu: usize,
    pub(crate) core: usize,
    pub(crate) package: usize,
    pub(crate) numa_node: usize,
}

/// Order CPUs so that any prefix spreads over physical cores: rank each CPU by its
/// position among the hyper-threads of its core, then sort by (rank, cpu).
pub(crate) fn spread_order(mut cpus: Vec<Location>) -> Vec<usize> {
    cpus.sort_by_key(|l| (l.numa_node, l.package, l.core, l.cpu));
    let mut ranked: Vec<(usize, usize)> = Vec::with_capacity(cpus.len());
    let mut previous: Option<(usize, usize, usize)> = None;
    let mut rank = 0;
    for l in &cpus {
        let key = (l.numa_node, l.package, l.core);
        rank = if previous == Some(key) { rank + 1 } else { 0 };
        previous = Some(key);
        ranked.push((rank, l.cpu));
    }
    ranked.sort_unstable();
    ranked.into_iter().map(|(_, cpu)| cpu).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(cpu: usize, core: usize) -> Location {
        Location {
            cpu,
            core,
            package: 0,
            numa_node: 0,
        }
    }

    #[test]
    fn siblings_come_after_every_physical_core() {
        // 4 cores with 2 hyper-threads each, Linux-style numbering (cpu n and n+4 share a core).
        let cpus = (0..8).map(|cpu| loc(cpu, cpu % 4)).collect();
        assert_eq!(spread_order(cpus), vec![0, 1, 2, 3, 4, 5, 6, 7]);
        // Siblings numbered next to each other.
        let cpus = (0..8).map(|cpu| loc(cpu, cpu / 2)).collect();
        assert_eq!(spread_order(cpus), vec![0, 2, 4, 6, 1, 3, 5, 7]);
    }

    #[test]
    fn this_host_has_a_cpu() {
        let cpus = available_cpus().unwrap();
        assert!(!cpus.is_empty());
    }
}
