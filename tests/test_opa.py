"""OPA reader: real labels reproduce OPA's counts; the original archive format; bad rows are skipped and counted."""

import codecs
import csv
import json
import shutil

import pytest
import torch

from helpers_data import (MALFORMED_ARCHIVE_ROWS, OPA_LABELS, OPA_TEST_BACKGROUNDS, OPA_TEST_FOREGROUNDS,
                          build_opa_archive)
from locinsert.data import PlacementQuery, SkipReport, load_opa


@pytest.fixture(scope="module")
def opa_test():
    return load_opa(OPA_LABELS, split="test")


def test_pair_labels_reproduce_opa_test_counts(opa_test):
    assert opa_test.format == "pair"
    assert opa_test.num_positives == 3588
    assert opa_test.num_negatives == 7808
    assert opa_test.num_positives + opa_test.num_negatives == 11396
    assert opa_test.report.skipped == 0 and opa_test.report.kept == opa_test.report.seen == 11396
    # No category information: one query per (background, foreground), labelled "object".
    assert len(opa_test) == 1837
    assert len({q.image_id for q in opa_test}) == 153
    assert all(q.category == "object" and q.meta["category_known"] is False for q in opa_test)
    assert all(isinstance(q, PlacementQuery) and q.width is None for q in opa_test)


def test_pair_centres_become_opa_boxes(opa_test):
    # FOPA row (fg 69931, bg 442445, 262x250, positive centre [395, 279]) is OPA test row
    # [264, 154, 262, 250] label 1: x = cx - w // 2, y = cy - h // 2.
    q = next(q for q in opa_test if q.query_id == "442445:fg69931")
    assert any(torch.equal(p, torch.tensor([264.0, 154.0, 526.0, 404.0])) for p in q.positives)
    assert q.positives.dtype == torch.float32 and q.negatives.shape[1] == 4
    assert (q.positives[:, 2] > q.positives[:, 0]).all() and (q.negatives[:, 3] > q.negatives[:, 1]).all()
    assert len(q.meta["positive_fg_ids"]) == len(q.positives)
    with pytest.raises(ValueError, match="no image"):
        q.image  # labels only


def test_pair_labels_train_subset_and_csv_path():
    qs = load_opa(OPA_LABELS / "train_data_pair_head300.csv", split="train")
    assert (qs.num_positives, qs.num_negatives) == (579, 1153)
    assert qs.report.skipped == 0


def test_categories_map_groups_by_background_and_category(tmp_path):
    cats = tmp_path / "cats.json"
    cats.write_text(json.dumps({**OPA_TEST_FOREGROUNDS, "3332": "person"}))
    qs = load_opa(OPA_LABELS / "test_data_pair.csv", categories=cats)
    known = [q for q in qs if q.meta["category_known"]]
    assert {q.category for q in known} == {"cow", "sheep", "airplane", "zebra", "person"}
    cow = next(q for q in qs if q.query_id == "442445:cow")
    assert cow.category == "cow"
    # the totals do not change with grouping
    assert qs.num_positives + qs.num_negatives == 11396


@pytest.fixture()
def archive(tmp_path):
    info = build_opa_archive(tmp_path / "OPA")
    return tmp_path / "OPA", info


def test_archive_reads_real_rows_and_skips_every_malformed_one(archive):
    root, info = archive
    qs = load_opa(root, split="test")
    assert qs.format == "archive"
    rep = qs.report
    expected = {}
    for _, reason in MALFORMED_ARCHIVE_ROWS:
        expected[reason] = expected.get(reason, 0) + 1
    assert dict(rep.counts) == expected
    assert rep.kept == len(info["rows"]) and rep.seen == len(info["rows"]) + len(MALFORMED_ARCHIVE_ROWS)
    assert all(rep.examples[r] for r in expected)  # every reason comes with an example line
    assert "test_set.csv:" in rep.examples["bad_label"][0]
    assert "bad_position" in rep.summary()
    n_pos = sum(1 for r in info["rows"] if r[4] == "1")
    assert qs.num_positives == n_pos and qs.num_negatives == len(info["rows"]) - n_pos
    assert {q.category for q in qs} == {"cow", "sheep", "airplane", "zebra"}
    for q in qs:  # one query per (background, category), sizes from the JPEG headers
        assert q.query_id == f"{q.image_id}:{q.category}"
        assert (q.width, q.height) == OPA_TEST_BACKGROUNDS[q.image_id]
    cow = next(q for q in qs if q.category == "cow")
    assert torch.tensor([264.0, 154.0, 526.0, 404.0]) in cow.positives
    assert cow.image.size == (640, 512)  # lazy image, right file


def test_archive_matches_pair_labels_of_the_same_backgrounds(archive):
    root, _ = archive
    a = {q.query_id: q for q in load_opa(root)}
    p = load_opa(OPA_LABELS / "test_data_pair.csv", images=root, categories=OPA_TEST_FOREGROUNDS)
    # every other background has no image under this root: skipped as missing, in boxes
    assert p.report.counts["missing_image"] == 11396 - p.report.kept
    b = {q.query_id: q for q in p}
    assert set(a) == set(b)
    for k in a:
        assert sorted(a[k].positives.tolist()) == sorted(b[k].positives.tolist())
        assert sorted(a[k].negatives.tolist()) == sorted(b[k].negatives.tolist())
        assert b[k].size == a[k].size and b[k].image.size == a[k].size


def test_archive_category_from_background_folder_without_foregrounds(tmp_path):
    build_opa_archive(tmp_path, malformed=False, foregrounds=False)
    qs = load_opa(tmp_path / "test_set.csv")
    assert qs.report.skipped == 0
    assert {q.category for q in qs} == {"cow", "sheep", "airplane", "zebra"}


def test_pair_box_outside_known_image_is_skipped(tmp_path):
    root = tmp_path / "imgs"
    build_opa_archive(root, malformed=False)
    # shrink one background: its boxes no longer fit and must be dropped, box by box
    from helpers_data import write_jpeg
    write_jpeg(root / "background" / "sheep" / "186413.jpg", 200, 150)
    qs = load_opa(OPA_LABELS / "test_data_pair.csv", images=root)
    assert qs.report.counts["box_outside_image"] > 0
    for q in qs:
        if q.width is not None:
            assert (q.positives[:, 2] <= q.width).all() and (q.negatives[:, 3] <= q.height).all()


def test_pair_malformed_rows_are_counted(tmp_path):
    src = OPA_LABELS / "test_data_pair.csv"
    bad = tmp_path / "test_data_pair.csv"
    with open(src) as f:
        lines = f.read().splitlines()
    lines[1:1] = [
        '1,2,3,0.5,10,10,"[[5, 5]]","not json"',         # bad_label_list (one row)
        '1,x,3,0.5,10,10,"[[5, 5]]","[[6, 6]]"',          # bad_id (two boxes)
        '1,2,3,0.5,0,10,"[[5, 5]]",[]',                   # bad_size (one box)
        '1,2,3,0.5,10,10,"[[5, 5], [1]]",[]',             # bad_centre (one box), the other box kept
        '1,2,3,0.5,10,10',                                # malformed_row
    ]
    bad.write_text("\n".join(lines) + "\n")
    qs = load_opa(tmp_path, split="test")
    assert dict(qs.report.counts) == {"bad_label_list": 1, "bad_id": 2, "bad_size": 1, "bad_centre": 1,
                                      "malformed_row": 1}
    assert qs.num_positives + qs.num_negatives == 11396 + 1


def test_clear_errors_for_unusable_inputs(tmp_path):
    with pytest.raises(ValueError, match="neither"):
        load_opa(tmp_path)
    with pytest.raises(ValueError, match="not found"):
        load_opa(tmp_path / "nope")
    f = tmp_path / "x.csv"
    f.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="not an OPA CSV"):
        load_opa(f)
    g = tmp_path / "test_set.csv"
    g.write_text("fg_id,bg_id,position\n1,2,[1,1,2,2]\n")
    with pytest.raises(ValueError, match="lacks the column"):
        load_opa(g, images=tmp_path)
    shutil.copy(OPA_LABELS / "test_data_pair.csv", tmp_path / "test_data_pair.csv")
    with pytest.raises(ValueError, match="format"):
        load_opa(tmp_path / "test_data_pair.csv", format="coco")
    with pytest.raises(ValueError, match="categories"):
        load_opa(tmp_path / "test_data_pair.csv", categories={"abc": "dog"})


def test_skip_report_merge_and_dict():
    a, b = SkipReport("a"), SkipReport("b")
    a.seen, a.kept = 3, 2
    a.skip("bad_label", "x:1")
    b.seen = 2
    b.skip("bad_label", "y:1")
    b.skip("missing_image", "y:2")
    a.merge(b)
    d = a.as_dict()
    assert d["seen"] == 5 and d["skipped"] == 3 and d["counts"] == {"bad_label": 2, "missing_image": 1}
    assert d["examples"]["bad_label"] == ["x:1", "y:1"]
    # check a CSV sanity: the real header the fixtures use
    with open(OPA_LABELS / "test_data_pair.csv") as f:
        assert next(csv.reader(f)) == ["imgID", "annID", "scID", "scale", "newWidth", "newHeight", "pos_label",
                                       "neg_label"]


def test_pair_labels_with_flat_coco_images(tmp_path):
    from helpers_data import write_jpeg
    write_jpeg(tmp_path / "000000442445.jpg", 640, 512)
    qs = load_opa(OPA_LABELS / "test_data_pair.csv", images=tmp_path)
    found = [q for q in qs if q.image_id == "442445"]
    assert found and all(q.size == (640, 512) and q.category == "object" for q in found)
    assert found[0].image.size == (640, 512)
    assert qs.report.kept == sum(len(q.positives) + len(q.negatives) for q in found)


def test_image_size_from_header_follows_exif_rotation(tmp_path):
    from PIL import Image

    from locinsert.data.opa import _header_size
    from locinsert.images import load_image
    img = Image.new("RGB", (30, 20))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90: shown as 20 x 30
    img.save(tmp_path / "r.jpg", exif=exif)
    assert _header_size(tmp_path / "r.jpg") == (20, 30) == load_image(tmp_path / "r.jpg").size


# -- damaged files: one bad line never costs a good one (issue: readers never fail a whole file) --------

PAIR_HEAD = (OPA_LABELS / "test_data_pair.csv").read_bytes().splitlines()[:41]  # header + 40 real rows
BAD_ROW = b'1,2,3,0.5,10,10,"[[5, 5]]","[[6, 6]]"'  # a well-formed row: 2 boxes, used as the base of damage


def _load_bytes(tmp_path, data: bytes, name="test_data_pair.csv", **kw):
    path = tmp_path / name
    path.write_bytes(data)
    return load_opa(path, **kw)


@pytest.fixture(scope="module")
def clean_pairs(tmp_path_factory):
    qs = _load_bytes(tmp_path_factory.mktemp("clean"), b"\n".join(PAIR_HEAD) + b"\n")
    assert qs.report.skipped == 0
    return qs


def _boxes(qs):
    return sorted((q.query_id, tuple(b)) for q in qs for b in [*q.positives.tolist(), *q.negatives.tolist()])


DAMAGED_LINES = {  # id: (line, expected reason, boxes it counts for)
    "byte_not_utf8": (BAD_ROW.replace(b"0.5", b"0.5\xff"), "bad_encoding", 1),
    "latin1_text": (BAD_ROW.replace(b"3,0.5", b"3\xe9,0.5"), "bad_encoding", 1),
    "cut_multibyte_char": (BAD_ROW[:-1] + b"\xc3", "bad_encoding", 1),
    "unterminated_quote": (b'1,2,3,0.5,10,10,"[[5, 5]],[]', "malformed_row", 1),
    "field_over_csv_limit": (b'1,2,3,0.5,10,10,"[' + b"1, " * 50_000 + b'1]",[]', "malformed_row", 1),
    "line_over_max_chars": (b"9" * (1 << 20) + b"99", "malformed_row", 1),
    "text_after_closing_quote": (b'1,2,3,0.5,10,10,"[[5, 5]]"x,[]', "malformed_row", 1),
    "too_few_fields": (b"1,2,3,0.5,10,10", "malformed_row", 1),
    "nul_in_id": (BAD_ROW.replace(b"1,2,3", b"1,2\x00,3"), "bad_id", 2),
    "repeated_header": (PAIR_HEAD[0], "repeated_header", 1),  # files concatenated
}


@pytest.mark.parametrize("line,reason,n", list(DAMAGED_LINES.values()), ids=list(DAMAGED_LINES))
def test_a_damaged_line_is_skipped_with_its_line_and_every_good_line_kept(tmp_path, clean_pairs, line, reason, n):
    lines = list(PAIR_HEAD)
    lines.insert(6, line)  # physical line 7
    qs = _load_bytes(tmp_path, b"\n".join(lines) + b"\n")
    assert dict(qs.report.counts) == {reason: n}
    assert qs.report.examples[reason][0].startswith("test_data_pair.csv:7:")
    assert _boxes(qs) == _boxes(clean_pairs)  # every good row kept, nothing swallowed
    assert qs.report.kept == clean_pairs.report.kept


HARMLESS_VARIANTS = {
    "utf8_bom": lambda b: codecs.BOM_UTF8 + b,
    "utf16_with_bom": lambda b: b.decode().encode("utf-16"),
    "utf16_big_endian_with_bom": lambda b: codecs.BOM_UTF16_BE + b.decode().encode("utf-16-be"),
    "utf32_with_bom": lambda b: b.decode().encode("utf-32"),
    "crlf": lambda b: b.replace(b"\n", b"\r\n"),
    "cr_only": lambda b: b.replace(b"\n", b"\r"),
    "blank_lines": lambda b: b.replace(b"\n", b"\n\n   \n", 3),
    "trailing_empty_fields": lambda b: b.replace(b']"\n', b']",\n', 5),
    "appended_file_with_bom": lambda b: b + codecs.BOM_UTF8 + b"\n".join(PAIR_HEAD[1:]) + b"\n",
}


@pytest.mark.parametrize("transform", list(HARMLESS_VARIANTS.values()), ids=list(HARMLESS_VARIANTS))
def test_harmless_variants_read_the_same_rows(tmp_path, clean_pairs, transform):
    qs = _load_bytes(tmp_path, transform(b"\n".join(PAIR_HEAD) + b"\n"))
    expected = _boxes(clean_pairs)
    got = _boxes(qs)
    if len(got) != len(expected):  # the appended file: every row twice
        assert got == sorted(expected * 2)
    else:
        assert got == expected
    assert qs.report.skipped == 0


def test_a_duplicated_column_is_used_only_where_its_copies_agree(tmp_path, clean_pairs):
    header, *rows = PAIR_HEAD
    lines = [header + b",scID"] + [r + b"," + r.split(b",")[2] for r in rows]
    lines[5] = rows[4] + b",123"  # the copies disagree on line 6
    qs = _load_bytes(tmp_path, b"\n".join(lines) + b"\n")
    assert dict(qs.report.counts) == {"conflicting_columns": 1}
    assert qs.report.examples["conflicting_columns"][0].startswith("test_data_pair.csv:6:")
    (tmp_path / "w").mkdir()
    without = _load_bytes(tmp_path / "w", b"\n".join([header, *rows[:4], *rows[5:]]) + b"\n")
    assert _boxes(qs) == _boxes(without) != _boxes(clean_pairs)  # only that row is lost
    # a duplicated column the reader does not use changes nothing
    lines = [header + b",extra,extra"] + [r + b",a,b" for r in rows]
    assert _boxes(_load_bytes(tmp_path, b"\n".join(lines) + b"\n")) == _boxes(clean_pairs)


def test_archive_rows_damaged_in_the_file_are_skipped(tmp_path):
    info = build_opa_archive(tmp_path, malformed=False)
    path = tmp_path / "test_set.csv"
    lines = path.read_bytes().splitlines()
    good = len(lines) - 1
    lines.insert(3, lines[2].replace(b"dataset/", b"dataset/\xff"))  # a bad byte in img_name
    lines.insert(5, lines[4][:20])  # a row cut inside its quoted position
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    qs = load_opa(tmp_path, split="test")
    assert dict(qs.report.counts) == {"bad_encoding": 1, "malformed_row": 1}
    assert qs.report.kept == good == len(info["rows"])
    assert [e.split(":")[1] for e in (qs.report.examples["bad_encoding"][0],
                                      qs.report.examples["malformed_row"][0])] == ["4", "6"]


def test_a_bad_header_is_a_clear_error_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        _load_bytes(tmp_path, b"\n\n", format="pair")
    with pytest.raises(ValueError, match=r"test_data_pair.csv:1: the CSV header cannot be read"):
        _load_bytes(tmp_path, b'imgID,"annID\n1,2\n', format="pair")
    with pytest.raises(ValueError, match="header cannot be read .bytes that are not UTF-8 at byte 46"):
        _load_bytes(tmp_path, PAIR_HEAD[0].replace(b"pos_label", b"pos\xff_label") + b"\n")


def test_a_categories_file_skips_and_counts_its_bad_lines(tmp_path):
    cats = tmp_path / "cats.csv"
    cats.write_bytes(b"fg_id,category\n69931,cow\n64754,sh\xffeep\nabc,dog\n160915,airplane\n69931,horse\n"
                     b'2175267,"zebra\n')
    qs = load_opa(OPA_LABELS / "test_data_pair.csv", categories=cats)
    rep = qs.report
    assert rep.counts["bad_category_row"] == 3 and rep.counts["conflicting_category"] == 1
    assert {q.category for q in qs if q.meta["category_known"]} == {"cow", "airplane"}  # first name kept
    assert any(e.startswith("cats.csv:3:") for e in rep.examples["bad_category_row"])
    assert qs.num_positives + qs.num_negatives == 11396  # the boxes are untouched
    bad_json = tmp_path / "cats.json"
    bad_json.write_bytes(b'{"69931": "c\xffow"}')
    with pytest.raises(ValueError, match="cats.json"):
        load_opa(OPA_LABELS / "test_data_pair.csv", categories=bad_json)
    good_json = tmp_path / "ok.json"
    good_json.write_text(json.dumps({"69931": "cow", "x": "dog", "64754": ""}))
    rep = load_opa(OPA_LABELS / "test_data_pair.csv", categories=good_json).report
    assert rep.counts["bad_category_row"] == 2


def test_an_image_bomb_costs_only_its_own_rows(tmp_path, monkeypatch):
    from PIL import Image

    info = build_opa_archive(tmp_path, malformed=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 640 * 512 // 2)  # only the 529x640 background is over 2x
    qs = load_opa(tmp_path, split="test")
    zebra_rows = sum(1 for r in info["rows"] if r[1] == "348935")
    assert zebra_rows and dict(qs.report.counts) == {"unreadable_image": zebra_rows}
    assert qs.report.kept == len(info["rows"]) - zebra_rows
    assert {q.category for q in qs} == {"cow", "sheep", "airplane"}
