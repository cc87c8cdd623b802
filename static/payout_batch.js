// A payout batch's page while the batch is being paid: asks the server for its status every few
// seconds (finance's session cookie goes with the fetch), says when it last asked, and reloads the
// page once the status changes, so the lines, transfers and Stripe's side show as they now are.
// A batch that is done has no element to follow: the page then asks nothing.
(() => {
  const live = document.querySelector("[data-poll-status]");
  if (!live) return;
  const every = 3000;
  const checked = live.querySelector("[data-testid=last-checked]");

  async function check() {
    try {
      const answer = await fetch(live.dataset.pollStatus, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (answer.ok) {
        const batch = await answer.json();
        if (batch.status !== live.dataset.status) {
          window.location.reload();
          return;
        }
        if (checked) checked.textContent = batch.checked_text;
      }
    } catch {
      // The network dropped for a moment: the next round asks again.
    }
    window.setTimeout(check, every);
  }

  window.setTimeout(check, every);
})();
