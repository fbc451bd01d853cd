"""Notebook parameters: one check for params files, -p and what a kernel holds; the notebooks' own declarations."""

import re

import pytest
import yaml

from nimrunbook.errors import InputError
from nimrunbook.reports.execute import notebook_values, templates
from nimrunbook.runbook import parameters as params

CATALOG = params.catalog(templates())
PLAN = CATALOG["01_plan_profiles"]
PLAN_PATH = next(t for t in templates() if t.stem == "01_plan_profiles")


@pytest.mark.parametrize(
    ("name", "value", "wrong"),
    [
        ("lora", "maybe", True),
        ("lora", "no", True),  # quoted in YAML: text, never false
        ("lora", 0, True),
        ("lora", False, False),
        ("images", "nvcr.io/nim/meta/x:1", True),
        ("images", ["nvcr.io/nim/meta/x:1"], False),
        ("listing_environment", [], True),
        ("gpus", 3, True),
        ("selected_profiles", {"img": "auto"}, False),  # object: its content is checked where it is used
    ],
)
def test_values_are_checked_against_the_annotation(name, value, wrong):
    assert (params.type_problem(PLAN[name], value) is not None) is wrong


def test_numbers_are_not_booleans_and_ints_are_floats():
    workers = CATALOG["02_mirror_images"]["workers"]
    free = CATALOG["00_preflight"]["min_free_gb"]
    assert params.type_problem(workers, True) and not params.type_problem(workers, 3)
    assert not params.type_problem(free, 5) and not params.type_problem(free, 2.5) and params.type_problem(free, "5")


def test_minus_p_lora_maybe_is_an_error_naming_the_parameter():
    given = params.read_pairs([("lora", "maybe"), ("images", "[nvcr.io/nim/meta/x:1]"), ("gpus", "L40S")])
    with pytest.raises(InputError) as error:
        notebook_values(PLAN_PATH, {}, given)
    assert "lora must be true or false, not 'maybe'" in str(error.value) and error.value.exit_code == 2


def test_a_misspelled_key_names_the_nearest_and_required_ones_are_named(tmp_path):
    file = tmp_path / "params.yaml"
    file.write_text("images: [nvcr.io/nim/meta/x:1]\ngpu: L40S\nlora: false\n")
    values = params.read_params_file(file)
    with pytest.raises(InputError) as misspelled:
        params.check_params_file(values, CATALOG, where=str(file))
    assert "no parameter 'gpu'; did you mean 'gpus'?" in str(misspelled.value)
    with pytest.raises(InputError) as missing:  # the file without its typo: 01 has no GPU inventory
        notebook_values(PLAN_PATH, {k: v for k, v in values.items() if k != "gpu"}, {})
    assert "01_plan_profiles needs gpus or nvidia_smi_file or node_labels_file or kubeconfig" in str(missing.value)
    assert notebook_values(PLAN_PATH, {**values, "gpus": "L40S"}, {})["gpus"] == "L40S"


def test_minus_p_for_another_notebook_says_whose_it_is():
    with pytest.raises(InputError) as error:
        notebook_values(next(t for t in templates() if t.stem == "00_preflight"), {}, {"gpus": "L40S"})
    assert "gpus belongs to 01_plan_profiles" in str(error.value)


def test_params_file_paths_are_relative_to_the_file_and_run_settings_are_refused(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    file = site / "params.yaml"
    file.write_text("cache_dir: nim-cache\nsign_key: ~/keys/k\nregistry_ca: {r.example: ca.pem}\ns3_bucket: b\n")
    values = params.read_params_file(file)
    assert values["cache_dir"] == str(site / "nim-cache") and values["s3_bucket"] == "b"
    assert values["registry_ca"] == {"r.example": str(site / "ca.pem")} and not values["sign_key"].startswith("~")
    monkeypatch.chdir(tmp_path)
    assert params.read_pairs([("cache_dir", "c")])["cache_dir"] == str(tmp_path / "c")
    file.write_text("run_dir: runs/x\n")
    with pytest.raises(InputError, match="belong to each run"):
        params.read_params_file(file)


@pytest.mark.parametrize(
    ("text", "message"),
    [("- a\n- b\n", "not a mapping"), ("a: [\n", "not valid YAML"), (b"\xff\xfe", "Cannot read")],
)
def test_unreadable_params_files_are_one_paragraph(tmp_path, text, message):
    file = tmp_path / "params.yaml"
    file.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError, match=message):
        params.read_params_file(file)


# -- the notebooks' declarations -----------------------------------------------------------------------------

PATH_WORDS = re.compile(r"\b(file|folder|directory|pem|path|key|kubeconfig)\b", re.I)
NOT_PATHS = {
    "gpus",
    "readonly_aws_profile",
    "ngc_api_key_env",
    "images",
    "internal_registry",
    "inside_registry",
    "old_image",
    "new_image",
}


@pytest.mark.parametrize("notebook", sorted(CATALOG), ids=str)
def test_every_notebook_declares_its_parameters_so_they_can_be_checked(notebook):
    declared = CATALOG[notebook]
    assert list(declared)[:4] == ["run_dir", "progress", "operator", "change_id"], "the common parameters first"
    for parameter in declared.values():
        assert parameter.type_name in params.TYPES, f"{parameter.name}: a type the checks know"
        alternatives = parameter.required_with or ()
        assert set(alternatives) <= set(declared), f"{parameter.name}: required with a parameter it does not have"
        if alternatives:
            assert parameter.default in ('""', "[]", "{}"), f"{parameter.name}: required, so no example default"
        says_path = PATH_WORDS.search(parameter.help)
        if parameter.type_name == "str" and says_path and parameter.name not in NOT_PATHS:
            assert params.is_path(parameter.name), f"{parameter.name} names a file or folder: end it in _dir/_file/_key"


def test_no_example_cluster_in_any_default():
    """Nothing that could be mistaken for a real cluster, registry or image: these are required instead."""
    for notebook, declared in CATALOG.items():
        for parameter in declared.values():
            default = yaml.safe_load(parameter.default) if parameter.default else None
            text = str(default)
            assert "example.com" not in text and "nvcr.io" not in text and "L40S" not in text, (notebook, parameter)
    assert PLAN["images"].required_with == ("images",)
    assert PLAN["gpus"].required_with == ("gpus", "nvidia_smi_file", "node_labels_file", "kubeconfig")


@pytest.mark.parametrize("path", templates(), ids=lambda p: p.stem)
def test_every_notebook_starts_its_step_from_its_parameters_and_ends_with_what_is_next(path):
    from nimrunbook.reports.execute import next_step

    notebook = params.read_notebook(path)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert f'step = runbook.start("{path.stem}", globals())' in code[1].source  # one shared start, checked there
    assert "step.done(" in code[-1].source
    assert next_step(path), "the last cell says what comes next: **Next:** ..."


def test_minus_p_in_a_run_of_several_notebooks_goes_to_those_that_declare_it(tmp_path, capsys):
    """The README's inside run: 06 and 07 in one command, -p values that only 06 has."""
    from nimrunbook import cli

    def run(*extra: str) -> tuple[int, str]:
        argv = ["run", "06_verify_and_import_bundle", "07_configure_datarobot", "--run-dir", str(tmp_path / "r")]
        code = cli.main([*argv, "-p", "bundle_dir", str(tmp_path / "absent"), *extra])
        return code, capsys.readouterr().err

    code, err = run("-p", "bundel_dir", "x")  # a name neither has: refused once, before any kernel starts
    assert code == 2 and err.count("-p bundel_dir") == 1 and "did you mean 'bundle_dir'?" in err
    assert "07_configure_datarobot has no parameter 'bundle_dir'" not in err
    assert not (tmp_path / "r" / "run.json").exists()
