//! placeholder
#[derive(Debug, Clone, clap::Args)]
pub struct AttributeArgs {}
pub fn run(_a: &AttributeArgs) -> crate::Result<()> {
    Ok(())
}
