"""The app's API through gradio_client, against a real server on 127.0.0.1."""


def test_run_and_reload_through_the_api(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    out = client.predict("cad", None, 2, "tiny", "quick", 100, True, True, False, ["draco"], api_name="/on_run")
    # gr.State outputs are not part of the API: plots, table, ..., runs table, status
    status = out[-1]
    assert status.startswith("Run ") and "done" in status
    run_id = int(status.split()[1])
    assert out[0]["type"] == "plotly" and "necgs" in out[0]["plot"]
    table = out[2]
    codecs = {row[0] for row in table["data"]}
    assert {"floor", "necgs", "draco"} <= codecs
    reloaded = client.predict(run_id, api_name="/on_load_run")
    assert f"run {run_id}" in reloaded[-1] and reloaded[2]["data"] == table["data"]


def test_bad_upload_is_reported_not_crashing(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    out = client.predict("(my upload)", None, 2, "tiny", "quick", 5, True, True, False, [], api_name="/on_run")
    assert out[-1].startswith("Error:") and "no files uploaded" in out[-1]
