"""params.yaml and params.paper.yaml: valid, and the paper file is exactly the `# paper:` values."""

import yaml
from train_helpers import REPO

from fashionfail.commands.paper_params import apply_paper, paper_values
from fashionfail.core.config import SECTIONS, parse_section


def _leaves(d, path=()):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, (*path, k))
        else:
            yield (*path, k), v


def test_paper_file_is_params_with_the_paper_values():
    text = (REPO / "params.yaml").read_text()
    assert (REPO / "params.paper.yaml").read_text() == apply_paper(text), (
        "params.paper.yaml is stale: run `python -m fashionfail.commands.paper_params`"
    )


def test_every_difference_is_a_commented_paper_value_and_both_files_are_valid():
    text = (REPO / "params.yaml").read_text()
    ours = dict(_leaves(yaml.safe_load(text)))
    paper = dict(_leaves(yaml.safe_load((REPO / "params.paper.yaml").read_text())))
    commented = paper_values(text)
    assert ours.keys() == paper.keys()
    assert commented, "no `# paper:` comments found"
    for key, value in commented.items():
        assert paper[key] == value, key
    for key in ours:
        if ours[key] != paper[key]:
            assert key in commented, f"{'.'.join(key)} differs but has no # paper: comment"
    for name, model in SECTIONS.items():
        for params in (
            yaml.safe_load(text),
            yaml.safe_load((REPO / "params.paper.yaml").read_text()),
        ):
            parse_section(model, params[name], name)


def test_key_paper_values():
    paper = yaml.safe_load((REPO / "params.paper.yaml").read_text())
    assert paper["download"]["source"] == "official"
    assert paper["train_facere"]["arch"] == "maskrcnn_resnet50_fpn_v2"
    assert (
        paper["train_facere"]["max_epochs"] == 50
        and paper["finetune_facere_plus"]["max_epochs"] == 150
    )
    assert paper["train_facere"]["betas"] == [0.9, 0.95] and paper["train_facere"]["lr"] == 0.001
    assert paper["split"] == {"val_fraction": 0.25, "seed": 42}
