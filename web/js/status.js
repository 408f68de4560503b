// status.js - the start page: its texts in both languages, and whether the server
// answers its readiness probe (the first thing to check when a clinic says "the page
// does not work").
import { addStrings, t, mountLangSwitch, onLangChange, applyTranslations } from './i18n.js';
import './strings-common.js';

addStrings({
  en: {
    'index.docTitle': 'Tabib — virtual clinic',
    'index.title': 'Virtual clinic',
    'index.intro': 'Virtual consultations: wait in your clinic’s queue, then see your doctor by video.',
    'index.pages': 'Pages',
    'index.patient': 'I am a patient',
    'index.doctor': 'Doctor sign-in',
    'index.admin': 'Administration',
    'index.server': 'Server:',
    'index.checking': 'checking…',
    'index.ready': 'ready',
    'index.degraded': 'starting or degraded',
    'index.unreachable': 'unreachable',
  },
  ar: {
    'index.docTitle': 'طبيب — عيادة افتراضية',
    'index.title': 'عيادة افتراضية',
    'index.intro': 'استشارات افتراضية: انتظر في قائمة انتظار عيادتك، ثم قابل طبيبك بالفيديو.',
    'index.pages': 'الصفحات',
    'index.patient': 'أنا مريض',
    'index.doctor': 'دخول الطبيب',
    'index.admin': 'الإدارة',
    'index.server': 'الخادم:',
    'index.checking': 'جارٍ الفحص…',
    'index.ready': 'جاهز',
    'index.degraded': 'قيد التشغيل أو يعمل جزئيًا',
    'index.unreachable': 'لا يمكن الوصول إليه',
  },
});

const out = document.getElementById('server-status');
let status = 'checking';
const draw = () => (out.textContent = t(`index.${status}`));

async function check() {
  try {
    const res = await fetch('/readyz', { cache: 'no-store' });
    const body = await res.json();
    status = body.ready ? 'ready' : 'degraded';
  } catch {
    status = 'unreachable';
  }
  draw();
}

mountLangSwitch(document.getElementById('lang-switch'));
onLangChange(draw);
applyTranslations(document);
draw();
check();
