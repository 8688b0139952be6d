/** The profile: the name, the password, and signing out of every session. */

import { useState } from "preact/hooks";
import { call, endSession, signOut, type User } from "../api";
import { ErrorMessage } from "../components";

export function Profile({ user, changed }: { user: User; changed: (user: User) => void }) {
  const [nameError, setNameError] = useState<unknown>(null);
  const [passwordError, setPasswordError] = useState<unknown>(null);
  const [signOutError, setSignOutError] = useState<unknown>(null);
  const [saved, setSaved] = useState("");
  const [resent, setResent] = useState<unknown>(null);
  /** Each action's outcome replaces every earlier one: an old error beside a later success misleads. */
  function clear() {
    setNameError(null);
    setPasswordError(null);
    setSignOutError(null);
    setSaved("");
    setResent(null);
  }

  async function rename(event: Event) {
    event.preventDefault();
    const name = String(new FormData(event.currentTarget as HTMLFormElement).get("name"));
    clear();
    try {
      changed(await call<User>("PATCH", "/auth/me", { name }));
      setSaved("Name saved.");
    } catch (error) {
      setNameError(error);
    }
  }

  async function changePassword(event: Event) {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    clear();
    try {
      await call("POST", "/auth/password", {
        current_password: String(form.get("current")),
        new_password: String(form.get("new")),
      });
      endSession("Your password was changed: sign in with the new one.");
    } catch (error) {
      setPasswordError(error);
    }
  }

  async function resend() {
    clear();
    try {
      await call("POST", "/auth/verify-email/resend");
      setResent("A new verification link is on its way to your inbox.");
    } catch (error) {
      setResent(error);
    }
  }

  return (
    <main>
      <h1>Profile</h1>
      <p>
        Signed in as <strong>{user.email}</strong> ({user.role}).{" "}
        {user.email_verified ? "Your email address is verified." : "Your email address is not verified yet."}
      </p>
      {!user.email_verified && (
        <p>
          <button type="button" onClick={resend}>Send a new verification link</button>{" "}
          {typeof resent === "string" ? <span role="status">{resent}</span> : <ErrorMessage error={resent} />}
        </p>
      )}
      <section>
        <h2>Your name</h2>
        <form onSubmit={rename} class="inline">
          <label>Name<input name="name" required maxLength={100} defaultValue={user.name} /></label>
          <button type="submit">Save name</button>
        </form>
        {saved && <p role="status">{saved}</p>}
        <ErrorMessage error={nameError} />
      </section>
      <section>
        <h2>Password</h2>
        <form onSubmit={changePassword}>
          <label>Current password<input name="current" type="password" autocomplete="current-password" required /></label>
          <label>New password<input name="new" type="password" autocomplete="new-password" required minLength={8} maxLength={128} /></label>
          <ErrorMessage error={passwordError} />
          <button type="submit">Change password</button>
        </form>
        <p class="hint">Changing it signs you out everywhere, this page included.</p>
      </section>
      <section>
        <h2>Sessions</h2>
        <button type="button" class="danger" onClick={() => { clear(); signOut(true).catch(setSignOutError); }}>Sign out everywhere</button>
        <ErrorMessage error={signOutError} />
      </section>
    </main>
  );
}
