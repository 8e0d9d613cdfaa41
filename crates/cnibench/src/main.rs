//! `cnibench` command line.

fn main() {
    eprintln!("cnibench: not built yet");
    std::process::exit(2);
}
