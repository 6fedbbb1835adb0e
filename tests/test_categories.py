import pytest

from fashionfail.core.categories import (
    FASHIONFAIL_FP_IDS,
    NUM_FASHIONFAIL,
    NUM_FASHIONPEDIA,
    LabelSpace,
    fashionpedia_categories,
)


def test_fashionfail_classes_are_the_papers_22():
    assert NUM_FASHIONFAIL == 22
    assert set(range(27)) - set(FASHIONFAIL_FP_IDS) == {2, 12, 16, 19, 20}
    assert list(FASHIONFAIL_FP_IDS) == sorted(FASHIONFAIL_FP_IDS)


def test_remap_matches_facts_and_round_trips():
    # FACTS.md: 0->1, 1->2, 3->3, 4->4, ... 26->22 (model labels, background 0).
    space = LabelSpace("fashionfail")
    assert [space.to_label(c) for c in (0, 1, 3, 4, 26)] == [1, 2, 3, 4, 22]
    assert space.num_classes == 23
    labels = set()
    for fp in range(NUM_FASHIONPEDIA):
        if fp not in FASHIONFAIL_FP_IDS:
            assert not space.contains(fp)
            continue
        label = space.to_label(fp)
        labels.add(label)
        assert space.to_category(label) == fp  # category -> label -> category
    assert labels == set(range(1, 23))  # every label used once, none is background
    for label in range(1, 23):
        assert space.to_label(space.to_category(label)) == label  # label -> category -> label
    with pytest.raises(KeyError, match="category_id 2"):
        space.to_label(2)


def test_fashionpedia_label_space_keeps_background_free():
    space = LabelSpace("fashionpedia")
    assert space.num_classes == 47
    assert space.to_label(0) == 1  # category 0 (shirt) must not collide with background
    assert [space.to_category(k) for k in (1, 46)] == [0, 45]
    with pytest.raises(KeyError):
        space.to_category(0)


def test_categories_list_has_fashionpedia_keys():
    cats = fashionpedia_categories()
    assert [c["id"] for c in cats] == list(range(46))
    assert cats[23]["name"] == "shoe"
    assert all(set(c) == {"id", "name", "supercategory", "level", "taxonomy_id"} for c in cats)


def test_unknown_label_space():
    with pytest.raises(ValueError, match="unknown label space"):
        LabelSpace("coco")
