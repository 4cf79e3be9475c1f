"""The CLI reaches every search option and the ingest jobs, on a running service (--server, --key) as on a
data directory, and prints JSON when asked."""

import json
import zipfile

import pytest
from helpers import catalogue_image as photo

from app.cli import main


@pytest.fixture(autouse=True)
def keep_logging(monkeypatch):
    """main() points the root logger at the stderr of the moment (here capsys's, closed after the test) while
    the live server in this process keeps logging: leave logging as the test session set it."""
    monkeypatch.setattr("app.cli.logs.configure", lambda *args, **kwargs: None)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_search_on_a_service_with_filters_paging_views_and_boxes(capsys, server, catalogue):
    url, admin = server
    remote = ("--server", url, "--key", admin, "search")
    code, out, _ = cli(capsys, *remote, str(photo(catalogue, "F002-P003-1.jpg")), "--json")
    body = json.loads(out)
    assert code == 0 and body["factories"][0]["factory_id"] == "F002" and body["confident_match"]
    code, out, _ = cli(capsys, *remote, str(photo(catalogue, "F002-P003-1.jpg")))
    assert out.splitlines()[0].startswith(" 1. ") and "same product" in out.splitlines()[0] and "matching points" in out
    two = [str(photo(catalogue, "F003-P001-1.jpg")), str(photo(catalogue, "F003-P001-2.jpg"))]
    code, out, _ = cli(capsys, *remote, *two, "--bbox", "", "--bbox", "0.02,0.02,0.98,0.98", "--json")
    assert json.loads(out)["factories"][0]["factory_id"] == "F003"
    region = json.loads(cli(capsys, *remote, two[0], "--json")[1])["factories"][0]["region"]
    code, out, _ = cli(
        capsys, *remote, two[0], "--include-weak", "--region", region, "--top-k", "1", "--offset", "0", "--json"
    )
    body = json.loads(out)
    assert [f["region"] for f in body["factories"]] == [region] and body["total"] >= 1
    code, out, _ = cli(capsys, *remote, two[0], "--include-weak", "--max-price", "0.01", "--json")
    assert json.loads(out)["factories"] == []  # no product is that cheap
    image_id = json.loads(cli(capsys, *remote, two[0], "--json")[1])["factories"][0]["matches"][0]["image_id"]
    code, out, _ = cli(capsys, *remote, "--like", str(image_id), "--top-k", "2", "--json")
    assert code == 0 and len(json.loads(out)["factories"]) == 2


def test_the_servers_refusal_is_one_line(capsys, server, catalogue):
    url, admin = server
    code, _, err = cli(
        capsys, "--server", url, "--key", admin, "search", str(photo(catalogue, "F001-P001-1.jpg")), "--bbox", "9,9"
    )
    assert code == 2 and err.splitlines()[-1].startswith("error: 422") and "bbox" in err and "Traceback" not in err
    code, _, err = cli(capsys, "--server", url, "--key", "sl_wrong", "search", str(photo(catalogue, "F001-P001-1.jpg")))
    assert code == 2 and err.splitlines()[-1].startswith("error: 401")
    code, _, err = cli(capsys, "search")
    assert code == 2 and "give a photo, --url, --text or --like" in err


def test_jobs_submit_watch_status_list_and_cancel(capsys, server, catalogue, tmp_path):
    url, admin = server
    bundle = tmp_path / "c.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("manifest.csv", "factory_id,product_id,image\nCLI,CLI-P1,a.jpg\nCLI,CLI-P2,missing.jpg\n")
        archive.write(photo(catalogue, "F004-P002-1.jpg"), "a.jpg")
    remote = ("--server", url, "--key", admin, "jobs")
    code, out, _ = cli(capsys, *remote, "submit", str(bundle), "--wait", "--poll", "0.2")
    assert code == 0  # done, one row failed: the job did its work
    assert "done, 2 of 2 rows, 1 added, 1 failed" in out and "missing.jpg" in out
    job_id = out.split()[1].rstrip(":")
    code, out, _ = cli(capsys, *remote, "status", job_id, "--json")
    assert code == 0 and json.loads(out)["state"] == "done"
    code, out, _ = cli(capsys, *remote, "list")
    assert job_id in out
    code, out, _ = cli(capsys, *remote, "errors", job_id)
    assert code == 0 and out.splitlines()[0].startswith("line,factory_id,") and "CLI-P2" in out.splitlines()[1]
    code, out, _ = cli(capsys, *remote, "cancel", job_id)
    assert "done" in out  # a finished job stays as it finished
    code, _, err = cli(capsys, "jobs", "list")
    assert code == 2 and "--server" in err


@pytest.mark.parametrize("flag", ["--region", "--category"])
def test_search_on_a_data_directory_takes_the_same_filters(capsys, tmp_path, catalogue, flag):
    data = ("--data-dir", str(tmp_path / "data"), "--model", "effnet-lite0")
    assert cli(capsys, *data, "ingest", str(catalogue))[0] == 0
    query = str(photo(catalogue, "F004-P001-1.jpg"))
    first = json.loads(cli(capsys, *data, "search", query, "--json")[1])["factories"][0]
    value = first["region"] if flag == "--region" else first["matches"][0]["category"]
    code, out, _ = cli(capsys, *data, "search", query, flag, value, "--include-weak", "--no-auto-crop", "--json")
    body = json.loads(out)
    assert code == 0 and body["factories"][0]["factory_id"] == "F004"
    if flag == "--region":
        assert {f["region"] for f in body["factories"]} == {value}
    else:
        assert {m["category"] for f in body["factories"] for m in f["matches"]} == {value}


def test_a_photo_of_several_products_is_answered_for_each_on_the_command_line(capsys, server, catalogue, tmp_path):
    from PIL import Image

    url, admin = server
    photo_path = tmp_path / "two.jpg"
    canvas = Image.new("RGB", (700, 400), (255, 255, 255))
    canvas.paste(Image.open(photo(catalogue, "F002-P001-1.jpg")).crop((10, 10, 310, 310)), (20, 40))
    canvas.paste(Image.open(photo(catalogue, "F004-P001-1.jpg")).resize((200, 200)).crop((5, 5, 195, 195)), (480, 100))
    canvas.save(photo_path, quality=90)
    code, out, _ = cli(capsys, "--server", url, "--key", admin, "search", str(photo_path), "--per-subject")
    assert code == 0 and "product 1 of 2 in the photo" in out and "product 2 of 2 in the photo" in out
    first, second = out.split("product 2 of 2")
    assert "[F002," in first.splitlines()[1] and "[F004," in second.splitlines()[1]
    assert "likely categories:" in out


def test_queries_submit_wait_and_write_csv(capsys, server, catalogue, tmp_path):
    url, admin = server
    bundle = tmp_path / "shots.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.write(photo(catalogue, "F003-P003-1.jpg"), "a.jpg")
        archive.write(photo(catalogue, "F004-P004-1.jpg"), "b.jpg")
    out = tmp_path / "results.csv"
    remote = ("--server", url, "--key", admin, "queries")
    code, _, err = cli(
        capsys, *remote, "submit", str(bundle), "--top-k", "1", "--wait", "--poll", "0.1", "--out", str(out)
    )
    assert code == 0 and "done, 2 of 2 photos, 0 failed" in err and "results written" in err
    rows = out.read_text().splitlines()
    assert rows[1].startswith("1,a.jpg,1,F003,") and rows[2].startswith("2,b.jpg,1,F004,")
    job_id = err.split("query job ")[1].split(":")[0]
    code, printed, _ = cli(capsys, *remote, "results", job_id, "--json")
    assert code == 0 and json.loads(printed)[0]["answer"]["factories"][0]["factory_id"] == "F003"
    code, printed, _ = cli(capsys, *remote, "list")
    assert job_id in printed


def test_saved_searches_from_the_command_line(capsys, server, catalogue):
    url, admin = server
    remote = ("--server", url, "--key", admin, "saved")
    code, out, _ = cli(capsys, *remote, "add", str(photo(catalogue, "F001-P003-1.jpg")), "--name", "lamp")
    assert code == 0 and out.startswith("saved search ")
    saved_id = out.split()[2].rstrip(":")
    assert saved_id in cli(capsys, *remote, "list")[1] and cli(capsys, *remote, "matches", saved_id)[1] == ""
    assert cli(capsys, *remote, "delete", saved_id)[0] == 0
    code, _, err = cli(capsys, *remote, "matches", saved_id)
    assert code == 2 and err.splitlines()[-1].startswith("error: 404")
