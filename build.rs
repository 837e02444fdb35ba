// sqlx::migrate!("./migrations") embeds the migrations at compile time; without this a new
// migration file is not seen by an incremental build (the binary and the tests' templates
// would run without it).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
