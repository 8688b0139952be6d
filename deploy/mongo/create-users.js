// TaskFlow's MongoDB users, created or brought up to date by mongosh signed in as root (Compose's
// mongo-init service and the Kubernetes Job mongo-init run it on every deployment).
//
// Each user MONGODB_USERS names (separated by spaces) gets exactly the roles users.json lists for it:
// a service reads and writes its own database and nothing else (DESIGN §1), the backup reads
// everything. Its password is MONGODB_<USER>_PASSWORD. A second run changes nothing but the
// passwords' salts, so a changed password or role takes effect at the next deployment. The users
// live in the admin database: clients connect with authSource=admin.
const USERS_FILE = '/taskflow/mongo/users.json'; // where Compose and Kubernetes mount this directory

const roles = JSON.parse(fs.readFileSync(USERS_FILE, 'utf8'));
const users = (process.env.MONGODB_USERS || '').split(' ').filter(Boolean);
if (users.length === 0) throw new Error('MONGODB_USERS names no user');
const admin = db.getSiblingDB('admin');
for (const user of users) {
  const variable = `MONGODB_${user.toUpperCase()}_PASSWORD`;
  const pwd = process.env[variable];
  if (!(user in roles)) throw new Error(`${user} is not in ${USERS_FILE}`);
  if (!pwd) throw new Error(`${variable} is not set`);
  if (admin.getUser(user) === null) {
    admin.createUser({user, pwd, roles: roles[user]});
    print(`created ${user}`);
  } else {
    admin.updateUser(user, {pwd, roles: roles[user]});
    print(`updated ${user}`);
  }
}
