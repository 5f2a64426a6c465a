//! cgroup limits, accounting and the freezer, on cgroup v1 and v2 (picked by probing the host).
