//! The seccomp filter every sandbox process runs under (equivalent to Docker's default profile).
