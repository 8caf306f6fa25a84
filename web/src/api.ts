// The gateway, over gRPC-web on the page's own origin. The access token lives in memory
// only; the refresh token in sessionStorage (this tab, until it closes), so a reload keeps
// the session and no other site or tab can read it. Every call carries the access token;
// one that is about to expire is refreshed first (one refresh at a time).

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { DescService } from "@bufbuild/protobuf";
import { AuthService, type TokenPair } from "./gen/casescope/gateway/v1/auth_pb.js";

const REFRESH_KEY = "casescope.refresh";
/** Refresh this long before the access token expires. */
const REFRESH_MARGIN_MS = 30_000;
/** Every call gives up after this long (the gateway has its own limits too). */
const CALL_TIMEOUT_MS = 60_000;

interface Tokens {
  access: string;
  accessExpiresAt: number;
  refresh: string;
}

let tokens: Tokens | null = null;
let refreshing: Promise<void> | null = null;
const listeners = new Set<() => void>();

function setTokens(pair: TokenPair | undefined | null): void {
  if (!pair) {
    tokens = null;
    sessionStorage.removeItem(REFRESH_KEY);
  } else {
    tokens = {
      access: pair.accessToken,
      accessExpiresAt: pair.accessTokenExpiresAt ? timestampMs(pair.accessTokenExpiresAt) : 0,
      refresh: pair.refreshToken,
    };
    sessionStorage.setItem(REFRESH_KEY, pair.refreshToken);
  }
  for (const listener of listeners) listener();
}

let currentUser = "";

/** The signed-in user's id (set once WhoAmI answered; empty before). The app uses it
 *  only to offer actions on the user's own things; the server decides every call. */
export function currentUserId(): string {
  return currentUser;
}

export function setCurrentUserId(id: string): void {
  currentUser = id;
}

/** Called when the session starts or ends. */
export function onSessionChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function signedIn(): boolean {
  return tokens !== null;
}

// Calls that must not carry (or wait for) a session.
const PUBLIC = new Set(["Login", "Refresh", "Logout", "BeginOidcLogin", "CompleteOidcLogin", "GetSignInOptions"]);

const authenticate: Interceptor = (next) => async (request) => {
  if (!PUBLIC.has(request.method.name)) {
    if (tokens && tokens.accessExpiresAt - REFRESH_MARGIN_MS < Date.now()) {
      await refresh();
    }
    if (tokens) request.header.set("authorization", `Bearer ${tokens.access}`);
  }
  try {
    return await next(request);
  } catch (error) {
    const failure = ConnectError.from(error);
    if (failure.code === Code.Unauthenticated && !PUBLIC.has(request.method.name)) {
      setTokens(null);
    }
    throw failure;
  }
};

const transport = createGrpcWebTransport({
  baseUrl: window.location.origin,
  interceptors: [authenticate],
  defaultTimeoutMs: CALL_TIMEOUT_MS,
});

const clients = new Map<DescService, Client<DescService>>();

/** The client of one service. */
export function client<T extends DescService>(service: T): Client<T> {
  let found = clients.get(service);
  if (!found) {
    found = createClient(service, transport);
    clients.set(service, found);
  }
  return found as Client<T>;
}

export async function login(username: string, password: string): Promise<void> {
  const response = await client(AuthService).login({ username, password });
  setTokens(response.tokens);
}

const OIDC_STATE_KEY = "casescope.oidc.state";
/** Where the provider sends the browser back (a path: redirect URIs hold no fragment). */
export const OIDC_CALLBACK_PATH = "/oidc/callback";

/** Starts a sign-in at the OpenID Connect provider: the browser leaves for it. */
export async function beginOidcLogin(): Promise<void> {
  const begun = await client(AuthService).beginOidcLogin({
    redirectUri: `${window.location.origin}${OIDC_CALLBACK_PATH}`,
  });
  // Kept to check the provider sends back the sign-in this tab started.
  sessionStorage.setItem(OIDC_STATE_KEY, begun.state);
  window.location.assign(begun.authorizationUrl);
}

/** On the callback page: finishes the sign-in from the provider's answer in the address;
 *  `null` when this is not the callback, else the error to show (empty when signed in). */
export async function completeOidcLogin(): Promise<string | null> {
  if (window.location.pathname !== OIDC_CALLBACK_PATH) return null;
  const params = new URLSearchParams(window.location.search);
  const expected = sessionStorage.getItem(OIDC_STATE_KEY);
  sessionStorage.removeItem(OIDC_STATE_KEY);
  // The code leaves the address bar (and history) at once.
  window.history.replaceState(null, "", "/#/cases");
  const providerError = params.get("error");
  if (providerError) {
    return `The identity provider refused the sign-in: ${params.get("error_description") || providerError}`;
  }
  const state = params.get("state") ?? "";
  const code = params.get("code") ?? "";
  if (!state || !code) return "The identity provider sent the browser back without a sign-in code.";
  if (state !== expected) return "This sign-in was not started in this tab (or was already used): start again.";
  try {
    const response = await client(AuthService).completeOidcLogin({ state, code });
    setTokens(response.tokens);
    return "";
  } catch (failure) {
    return errorText(failure);
  }
}

async function refresh(): Promise<void> {
  if (!refreshing) {
    const refreshToken = tokens?.refresh ?? sessionStorage.getItem(REFRESH_KEY);
    refreshing = (async () => {
      try {
        if (!refreshToken) {
          setTokens(null);
          return;
        }
        setTokens(await client(AuthService).refresh({ refreshToken }));
      } catch {
        setTokens(null);
      } finally {
        refreshing = null;
      }
    })();
  }
  return refreshing;
}

/** Resumes the session of this tab after a reload; `false` when there is none. */
export async function resume(): Promise<boolean> {
  if (tokens) return true;
  if (!sessionStorage.getItem(REFRESH_KEY)) return false;
  await refresh();
  return tokens !== null;
}

export async function logout(): Promise<void> {
  const refreshToken = tokens?.refresh;
  setTokens(null);
  if (refreshToken) {
    try {
      await client(AuthService).logout({ refreshToken });
    } catch {
      // Signed out here whatever the server said; the token expires by itself.
    }
  }
}

/** The server's own words for a failed call. */
export function errorText(error: unknown): string {
  const failure = ConnectError.from(error);
  return failure.rawMessage || Code[failure.code] || "the request failed";
}
