fn main() {} // TODO(helper): criterion bench
