from tests.factories import login, make_publisher


async def test_publisher_can_log_in_and_see_dashboard(client, settings):
    _, email = await make_publisher(settings, display_name="Smoke Blog")
    await login(client, email)
    page = await client.get("/publisher")
    assert page.status_code == 200
    assert "Smoke Blog" in page.text
