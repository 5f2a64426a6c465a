//! The namespace launcher as its own binary, for the engine's tests. The shipped daemon runs
//! the same code as `bhatti __nsinit`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(bhatti_engine::namespace::init::main(&args));
}
