fn main() {
    std::process::exit(hpcc::main_entry())
}
