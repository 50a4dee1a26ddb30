/**
 * Types for asterisk-manager 0.2.0 (CommonJS, `module.exports = Manager`), as
 * far as ./client.ts uses it. See ./client.ts for what of it is used and why.
 */
declare module 'asterisk-manager' {
  /**
   * One parsed AMI message: header names lower-cased with surrounding spaces
   * removed; a repeated header becomes an array; `Variable`/`ChanVariable`
   * headers become an object of name=value.
   */
  export type ManagerMessage = Record<string, string | string[] | Record<string, string> | undefined>;

  /** An action: header name -> value. `actionid` is taken as the ActionID. */
  export type ManagerAction = Record<string, string | number | undefined>;

  export type ManagerCallback = (error: ManagerMessage | undefined, response?: ManagerMessage) => void;

  export interface ManagerInstance {
    on(event: string, listener: (...args: any[]) => void): ManagerInstance;
    once(event: string, listener: (...args: any[]) => void): ManagerInstance;
    removeListener(event: string, listener: (...args: any[]) => void): ManagerInstance;
    removeAllListeners(event?: string): ManagerInstance;
    listeners(event: string): Array<(...args: any[]) => void>;
    emit(event: string, ...args: unknown[]): boolean;
    options: { port?: number; host: string; username: string; password: string; events: boolean };
    connect(port: number, host: string, callback?: () => void): void;
    login(callback?: (error?: ManagerMessage) => void): void;
    /** Returns the ActionID used. */
    action(action: ManagerAction, callback?: ManagerCallback): string;
    disconnect(callback?: () => void): void;
    isConnected(): boolean;
    keepConnected(): void;
  }

  function Manager(port?: number, host?: string, username?: string, password?: string, events?: boolean): ManagerInstance;
  export default Manager;
}
