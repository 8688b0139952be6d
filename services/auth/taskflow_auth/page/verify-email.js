// The page a verification email links to: the token is in the fragment (never sent to a server),
// taken out of the address bar at once, and posted to auth; the answer's detail is shown.
"use strict";
const status = document.getElementById("status");
const token = new URLSearchParams(window.location.hash.slice(1)).get("token");
window.history.replaceState(null, "", window.location.pathname);

async function confirm() {
  if (!token) {
    status.textContent = "This link has no token. Open the link from the email again.";
    return;
  }
  try {
    const response = await fetch("api/v1/auth/verify-email", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token }),
    });
    if (response.status === 204) {
      status.textContent = "Your email address is confirmed. TaskFlow will email you from now on.";
      new BroadcastChannel("taskflow.account").postMessage("email verified");  // open TaskFlow tabs read the account again
      return;
    }
    const problem = await response.json().catch(() => ({}));
    status.textContent = problem.detail || `The confirmation failed (${response.status}).`;
  } catch {
    status.textContent = "TaskFlow cannot be reached. Try the link again later.";
  }
}

confirm();
