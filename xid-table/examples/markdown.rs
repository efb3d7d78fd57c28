fn main() {
    print!("{}", xid_table::markdown(&xid_table::table()));
}
