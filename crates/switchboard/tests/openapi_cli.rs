//! `switchboard openapi inspect` on the real binary: the Petstore fixture's tools as a table
//! and as JSON, and a malformed document refused with the JSON pointer of the bad node.

mod common;

use common::BIN;

fn petstore() -> String {
    format!(
        "{}/../switchboard-openapi/tests/fixtures/petstore.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn inspect(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(["openapi", "inspect"])
        .args(args)
        .output()
        .expect("run switchboard")
}

#[test]
fn inspect_lists_the_tools() {
    let table = inspect(&[&petstore()]);
    assert!(table.status.success(), "{table:?}");
    let stdout = String::from_utf8_lossy(&table.stdout);
    let find = stdout
        .lines()
        .find(|l| l.starts_with("findPets "))
        .expect("findPets row");
    assert!(
        find.contains("GET /pets")
            && find.contains("read-only")
            && find.contains("Returns all pets")
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("delete_pets_id ") && l.contains("destructive"))
    );

    let json = inspect(&[&petstore(), "--json"]);
    assert!(json.status.success(), "{json:?}");
    let tools: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON output");
    let names: Vec<&str> = tools
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "findPets",
            "addPet",
            "find_pet_by_id",
            "delete_pets_id",
            "getPetPhoto",
            "searchPets"
        ]
    );
    assert_eq!(
        tools[1]["input_schema"]["required"],
        serde_json::json!(["name"])
    );
}

#[test]
fn inspect_names_the_pointer_of_a_malformed_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "openapi: 3.0.3\ninfo: {title: bad, version: '1'}\npaths:\n  /pets/{petId}:\n    get:\n      parameters:\n        - name: petId\n          schema: {type: string}\n      responses: {}\n",
    )
    .expect("write");
    let out = inspect(&[path.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/paths/~1pets~1{petId}/get/parameters/0: missing \"in\""),
        "{stderr}"
    );
}
