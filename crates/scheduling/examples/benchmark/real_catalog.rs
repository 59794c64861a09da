//! `--catalog`: a realistic pod mix against the embedded us-west-2 catalog.

pub fn run(pods: usize, json: bool) {
    let _ = (pods, json);
    println!("catalog mode not yet wired");
}
