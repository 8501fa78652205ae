// The n-body benchmark (Computer Language Benchmarks Game): the Jovian planets around the sun, integrated
// with a fixed step. Floating-point work with sqrt in a short inner loop. `run` returns the final energy.

const SOLAR_MASS: f64 = 4.0 * Math.PI * Math.PI;
const DAYS_PER_YEAR: f64 = 365.24;
const STEPS: i32 = 5_000_000;
const BODIES: i32 = 5;

// Per body: x, y, z, vx, vy, vz, mass.
const FIELDS: i32 = 7;
const bodies = new StaticArray<f64>(BODIES * FIELDS);

@inline function at(i: i32, f: i32): f64 {
  return unchecked(bodies[i * FIELDS + f]);
}
@inline function put(i: i32, f: i32, v: f64): void {
  unchecked((bodies[i * FIELDS + f] = v));
}

function setBody(i: i32, x: f64, y: f64, z: f64, vx: f64, vy: f64, vz: f64, mass: f64): void {
  put(i, 0, x);
  put(i, 1, y);
  put(i, 2, z);
  put(i, 3, vx * DAYS_PER_YEAR);
  put(i, 4, vy * DAYS_PER_YEAR);
  put(i, 5, vz * DAYS_PER_YEAR);
  put(i, 6, mass * SOLAR_MASS);
}

function init(): void {
  setBody(0, 0, 0, 0, 0, 0, 0, 1);
  setBody(1, 4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01,
    1.66007664274403694e-03, 7.69901118419740425e-03, -6.90460016972063023e-05, 9.54791938424326609e-04);
  setBody(2, 8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01,
    -2.76742510726862411e-03, 4.99852801234917238e-03, 2.30417297573763929e-05, 2.85885980666130812e-04);
  setBody(3, 1.28943695621391310e+01, -1.51111514016986312e+01, -2.23307578892655734e-01,
    2.96460137564761618e-03, 2.37847173959480950e-03, -2.96589568540237556e-05, 4.36624404335156298e-05);
  setBody(4, 1.53796971148509165e+01, -2.59193146099879641e+01, 1.79258772950371181e-01,
    2.68067772490389322e-03, 1.62824170038242295e-03, -9.51592254519715870e-05, 5.15138902046611451e-05);
  let px: f64 = 0, py: f64 = 0, pz: f64 = 0;
  for (let i = 0; i < BODIES; i++) {
    const m = at(i, 6);
    px += at(i, 3) * m;
    py += at(i, 4) * m;
    pz += at(i, 5) * m;
  }
  put(0, 3, -px / SOLAR_MASS);
  put(0, 4, -py / SOLAR_MASS);
  put(0, 5, -pz / SOLAR_MASS);
}

function advance(dt: f64): void {
  for (let i = 0; i < BODIES; i++) {
    const ix = at(i, 0), iy = at(i, 1), iz = at(i, 2), im = at(i, 6);
    let ivx = at(i, 3), ivy = at(i, 4), ivz = at(i, 5);
    for (let j = i + 1; j < BODIES; j++) {
      const dx = ix - at(j, 0);
      const dy = iy - at(j, 1);
      const dz = iz - at(j, 2);
      const d2 = dx * dx + dy * dy + dz * dz;
      const mag = dt / (d2 * Math.sqrt(d2));
      const jm = at(j, 6);
      ivx -= dx * jm * mag;
      ivy -= dy * jm * mag;
      ivz -= dz * jm * mag;
      put(j, 3, at(j, 3) + dx * im * mag);
      put(j, 4, at(j, 4) + dy * im * mag);
      put(j, 5, at(j, 5) + dz * im * mag);
    }
    put(i, 3, ivx);
    put(i, 4, ivy);
    put(i, 5, ivz);
    put(i, 0, ix + dt * ivx);
    put(i, 1, iy + dt * ivy);
    put(i, 2, iz + dt * ivz);
  }
}

function energy(): f64 {
  let e: f64 = 0;
  for (let i = 0; i < BODIES; i++) {
    const vx = at(i, 3), vy = at(i, 4), vz = at(i, 5), m = at(i, 6);
    e += 0.5 * m * (vx * vx + vy * vy + vz * vz);
    for (let j = i + 1; j < BODIES; j++) {
      const dx = at(i, 0) - at(j, 0);
      const dy = at(i, 1) - at(j, 1);
      const dz = at(i, 2) - at(j, 2);
      e -= (m * at(j, 6)) / Math.sqrt(dx * dx + dy * dy + dz * dz);
    }
  }
  return e;
}

export function run(): f64 {
  init();
  for (let s = 0; s < STEPS; s++) advance(0.01);
  return energy();
}
