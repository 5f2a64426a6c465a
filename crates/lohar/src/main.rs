//! lohar: dispatch only. See the library for the agent itself.

fn main() {
    std::process::exit(lohar::run(std::env::args().collect()));
}
