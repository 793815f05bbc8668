/**
 * The little of playwright-core's interface that `_chromium.ts` uses,
 * declared here so that type checking needs no npm package.
 */

export interface Route {
  fulfill(response: { status: number; contentType: string; body: string }): Promise<void>;
}

export interface Response {
  status(): number;
}

export interface Page {
  route(url: string, handler: (route: Route) => unknown): Promise<void>;
  goto(url: string): Promise<Response | null>;
  close(): Promise<void>;
  waitForFunction(
    expression: string,
    arg: undefined,
    options: { timeout: number },
  ): Promise<unknown>;
  evaluate(expression: string): Promise<unknown>;
}

export interface BrowserContext {
  grantPermissions(permissions: string[], options: { origin: string }): Promise<void>;
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

export const chromium: {
  launchPersistentContext(
    userDataDir: string,
    options: { executablePath: string; headless: boolean; args: string[] },
  ): Promise<BrowserContext>;
};
