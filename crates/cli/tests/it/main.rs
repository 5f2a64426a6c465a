//! Integration tests: the real `bhatti` binary (assert_cmd), against a real `bhatti serve`
//! started per test on 127.0.0.1 with a temp data dir, a temp `BHATTI_CONFIG` and a temp
//! `HOME`/`BHATTI_HOME`. Nothing here touches the real `~/.bhatti` or `/etc/bhatti`.

mod harness;

mod cli;
mod daemon;
mod users;
