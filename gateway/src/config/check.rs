pub fn check(_c: &crate::config::Config) -> Vec<crate::config::Diagnostic> {
    Vec::new()
}
