import { useEffect, useState } from "preact/hooks";
import { beginOidcLogin, client, errorText, login } from "./api.js";
import { AuthService, type SignInOptions } from "./gen/casescope/gateway/v1/auth_pb.js";
import { visible } from "./text.js";
import { Alert } from "./ui.js";

/** Sign-in with a user name and password, or through the configured OpenID Connect
 *  provider; a refusal is shown as the server (or the provider) said it. */
export function SignIn({ initialError }: { initialError?: string | null }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(initialError ?? null);
  const [busy, setBusy] = useState(false);
  const [options, setOptions] = useState<SignInOptions | null>(null);
  useEffect(() => {
    client(AuthService)
      .getSignInOptions({})
      .then(setOptions, () => setOptions(null));
  }, []);
  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(username, password);
    } catch (failure) {
      setError(errorText(failure));
    } finally {
      setBusy(false);
    }
  };
  const sso = async () => {
    setBusy(true);
    setError(null);
    try {
      await beginOidcLogin();
    } catch (failure) {
      setError(errorText(failure));
      setBusy(false);
    }
  };
  let provider = "";
  try {
    provider = options?.oidcIssuer ? new URL(options.oidcIssuer).host : "";
  } catch {
    provider = options?.oidcIssuer ?? "";
  }
  return (
    <main id="main" class="signin">
      <h1>CaseScope</h1>
      <form onSubmit={submit} aria-label="Sign in">
        <label>
          User name
          <input
            name="username"
            autocomplete="username"
            required
            value={username}
            onInput={(e) => setUsername(e.currentTarget.value)}
          />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autocomplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        <Alert message={error} />
      </form>
      {options?.oidc && (
        <div class="sso">
          <p class="status">or</p>
          <button type="button" disabled={busy} onClick={() => void sso()}>
            Sign in with single sign-on
          </button>
          {provider && <p class="status">through {visible(provider)}</p>}
        </div>
      )}
    </main>
  );
}
