//! The demo agents shipped in `agents/*.toml` parse, and carry the seed's tasks.

use std::path::PathBuf;

use switchboard_agent::{Agent, Source};

fn load(name: &str) -> (Agent, switchboard_agent::AgentFile) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../agents")
        .join(format!("{name}.toml"));
    Agent::from_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn the_three_demo_agents_parse() {
    for (name, source, examples) in [
        ("file-manager", "fs", 4),
        ("data-analyst", "sql", 5),
        ("crm-assistant", "crm", 3),
    ] {
        let (agent, file) = load(name);
        assert_eq!(agent.name, name);
        assert_eq!(file.examples.len(), examples, "{name}");
        assert!(matches!(&agent.sources[..], [Source::Builtin { name, .. }] if name == source));
        assert_eq!(agent.settings.temperature, Some(0.2));
        assert!(agent.settings.strict_tools);
    }
}

#[test]
fn a_source_needs_exactly_one_kind() {
    let text = "name = \"x\"\ninstructions = \"y\"\n[[sources]]\nname = \"a\"\n";
    assert!(Agent::from_toml(text).is_err());
}
