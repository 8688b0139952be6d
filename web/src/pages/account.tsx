/** Sign in and sign up: the two forms a visitor sees. */

import { useState } from "preact/hooks";
import { signIn, signUp } from "../api";
import { ErrorMessage } from "../components";

export function SignIn({ notice }: { notice: string }) {
  const [mode, setMode] = useState<"in" | "up">("in");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: Event) {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    const email = String(form.get("email"));
    const password = String(form.get("password"));
    setBusy(true);
    setError(null);
    try {
      if (mode === "up") await signUp(email, password, String(form.get("name")));
      else await signIn(email, password);
    } catch (problem) {
      setError(problem);
      setBusy(false);
    }
  }

  const up = mode === "up";
  return (
    <main class="narrow">
      <h1>{up ? "Create your TaskFlow account" : "Sign in to TaskFlow"}</h1>
      {notice && <p class="notice" role="status">{notice}</p>}
      <form onSubmit={submit}>
        {up && (
          <label>Name<input name="name" autocomplete="name" required maxLength={100} /></label>
        )}
        <label>Email<input name="email" type="email" autocomplete="email" required /></label>
        <label>
          Password
          <input name="password" type="password" autocomplete={up ? "new-password" : "current-password"} required
                 minLength={up ? 8 : undefined} maxLength={128} />
        </label>
        {up && <p class="hint">8 to 128 characters.</p>}
        <ErrorMessage error={error} />
        <button type="submit" class="primary" disabled={busy}>{up ? "Create account" : "Sign in"}</button>
      </form>
      <p>
        {up ? "Already have an account? " : "New to TaskFlow? "}
        <button type="button" class="link" onClick={() => { setMode(up ? "in" : "up"); setError(null); }}>
          {up ? "Sign in instead" : "Create an account"}
        </button>
      </p>
    </main>
  );
}
