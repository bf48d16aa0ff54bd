// What the flow talks to outside Tether.
//
// In a real app these are your email provider and your database. Here the
// email provider is a stand-in that logs (and keeps) what it would send, and
// the project directory is in memory; tests inspect and reset both.

export interface SentEmail {
  to: string;
  template: string;
}

/** Stands in for an email API: records each message instead of sending it. */
export class EmailProvider {
  readonly sent: SentEmail[] = [];

  send(to: string, template: string): SentEmail {
    const message = { to, template };
    this.sent.push(message);
    console.info(`email '${template}' sent to ${to}`);
    return message;
  }
}

/** Which users have created a project (your database, in a real app). */
export class ProjectDirectory {
  readonly owners = new Set<number>();

  add(userId: number): void {
    this.owners.add(userId);
  }

  hasProject(userId: number): boolean {
    return this.owners.has(userId);
  }
}

export const email = new EmailProvider();
export const projects = new ProjectDirectory();
